"""The journal and the consumer under faults, and ``spotkit status`` reading the deployed journal, over the
wire (moto server; the CLI in its own process): groups recorded for every interruption, failed actions
recorded failed and retried into the dead-letter queue, dropped messages journaled with their reason, a
wrong table or a dead endpoint stopping with a clear error, a torn local journal line skipped."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.terraform_outputs import apply_outputs_only
from tests.support import interruption_world as w
from tests.support.network import free_port
from spotkit.runtime.interruption.consumer import ConsumerError, QueueConsumer
from spotkit.runtime.interruption.handler import Handler, HandlerSettings
from spotkit.runtime.interruption.store import DynamoDBStore, LocalFileStore, dropped_id

CHECKPOINT = "/opt/spotkit/hooks/checkpoint"
ENV = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
       "AWS_DEFAULT_REGION": "us-east-1", "SPOTKIT_JOURNAL_TABLE": ""}


@pytest.fixture()
def world(aws):
    return w.build_world(aws, managed=2, unmanaged=1)


def spotkit(url: str, *args: str, cwd: Path | None = None, timeout: int = 180) -> subprocess.CompletedProcess:
    """The CLI in its own process, against the emulator at ``url``."""
    return subprocess.run([sys.executable, "-m", "spotkit.cli.main", "--endpoint-url", url, "--region", "us-east-1",
                           *args], capture_output=True, text=True, timeout=timeout, env=ENV, cwd=cwd)


def _handler(world, store=None) -> Handler:
    return Handler(world.clients, store or DynamoDBStore(world.clients.dynamodb, w.TABLE),
                   HandlerSettings(checkpoint_command=CHECKPOINT, drain_poll_seconds=0.01), sleep=lambda s: None)


def _queue_with_dlq(world, max_receive: int = 2) -> tuple:
    sqs = world.clients.get("sqs")
    dlq = sqs.create_queue(QueueName="interruptions-dlq")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    url = sqs.create_queue(QueueName="interruptions", Attributes={"RedrivePolicy": json.dumps(
        {"deadLetterTargetArn": arn, "maxReceiveCount": str(max_receive)})})["QueueUrl"]
    return sqs, url, dlq


def _depth(sqs, url) -> int:
    a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages",
                                                               "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return int(a["ApproximateNumberOfMessages"]) + int(a["ApproximateNumberOfMessagesNotVisible"])


# --- status from the deployed journal ------------------------------------------------------------

def test_status_shows_a_handled_spot_interruption_under_its_group(world, aws, tmp_path):
    # GIVEN a spot warning handled by `spotkit handle-events` into the DynamoDB journal
    instance = world.managed[0]
    event_file = tmp_path / "spot.json"
    event_file.write_text(json.dumps(w.spot_warning(instance)))
    handled = spotkit(aws.url, "handle-events", "--event-file", str(event_file), "--journal-table", w.TABLE, "--yes",
                      cwd=tmp_path)
    assert handled.returncode == 0, handled.stderr
    # WHEN `spotkit status` reads that table
    shown = spotkit(aws.url, "--output", "json", "status", "--journal-table", w.TABLE, cwd=tmp_path)
    # THEN the interruption is listed under the instance's group, done
    assert shown.returncode == 0, shown.stderr
    [group] = json.loads(shown.stdout)["groups"]
    assert group["group"] == w.GROUP
    assert [(e["kind"], e["instance_id"], e["status"]) for e in group["interruptions"]] == [
        ("spot-interruption", instance, "done")]
    # AND the text view counts and lists it
    text = spotkit(aws.url, "status", "--journal-table", w.TABLE, cwd=tmp_path)
    assert text.returncode == 0, text.stderr
    row = text.stdout.splitlines()[2]  # header, rule, first group
    assert row.split()[:5] == [w.GROUP, "-", "0", "2", "1"]  # (the ASG has no spotkit:group tag), 2 on-demand, 1 interruption
    assert f"{w.GROUP}: " in text.stdout and f"spot-interruption {instance} (done)" in text.stdout


def test_group_is_taken_from_the_auto_scaling_tag_when_there_is_no_spotkit_group_tag(world):
    # GIVEN an instance the group launched: spotkit:managed and aws:autoscaling:groupName, no spotkit:group
    asg = world.clients.autoscaling
    asg.create_or_update_tags(Tags=[{"ResourceId": w.GROUP, "ResourceType": "auto-scaling-group", "Key": "spotkit:managed",
                                     "Value": "true", "PropagateAtLaunch": True}])
    asg.set_desired_capacity(AutoScalingGroupName=w.GROUP, DesiredCapacity=1)
    [instance] = [i["InstanceId"] for i in asg.describe_auto_scaling_groups(
        AutoScalingGroupNames=[w.GROUP])["AutoScalingGroups"][0]["Instances"]]
    store = DynamoDBStore(world.clients.dynamodb, w.TABLE)
    # WHEN its spot warning is handled
    [out] = _handler(world, store).handle_body(json.dumps(w.spot_warning(instance)))
    # THEN the journal holds its group, and status lists it there
    assert (out.status, out.group) == ("acted", w.GROUP)
    assert store.get(out.event_id)["group_name"] == w.GROUP
    from spotkit.runbooks.status import interruptions_from_store, status

    result = status(world.clients.ec2, world.clients.autoscaling, interruptions=interruptions_from_store(store))
    assert {g.group: [e["instance_id"] for e in g.interruptions] for g in result.groups} == {w.GROUP: [instance]}


@pytest.mark.terraform
@pytest.mark.skipif(not any(Path(p, "terraform").is_file() for p in os.environ.get("PATH", "").split(os.pathsep)),
                    reason="terraform not on PATH")
def test_status_finds_the_journal_table_from_the_stacks_outputs(world, aws, tmp_path):
    # GIVEN a working directory whose Terraform state has the stack's journal table output (real terraform;
    # a configuration of outputs only, so no provider is needed)
    apply_outputs_only(tmp_path / ".spotkit" / "aws" / "training", {"interruption_journal_table": w.TABLE})
    # AND a handled spot warning in that table
    [out] = _handler(world).handle_body(json.dumps(w.spot_warning(world.managed[1])))
    assert out.status == "acted"
    # WHEN status is asked for the stack
    shown = spotkit(aws.url, "--output", "json", "status", "--stack", "training", "--project-dir",
                    str(tmp_path / ".spotkit"), cwd=tmp_path)
    # THEN it read the table the outputs name
    assert shown.returncode == 0, shown.stderr
    [group] = json.loads(shown.stdout)["groups"]
    assert [e["instance_id"] for e in group["interruptions"]] == [world.managed[1]]


# --- failed actions ------------------------------------------------------------------------------

def test_a_failed_lifecycle_completion_is_recorded_failed_retried_and_dead_lettered(world):
    # GIVEN a lifecycle action for a group that does not exist, on a queue that dead-letters after 2 receives
    sqs, url, dlq = _queue_with_dlq(world, max_receive=2)
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps(w.lifecycle_terminate(world.managed[0], group="ghost-group")))
    store = DynamoDBStore(world.clients.dynamodb, w.TABLE)
    # WHEN the consumer runs until the queue is empty (failed messages come back at once)
    stats = QueueConsumer(sqs, url, _handler(world, store), concurrency=1, visibility_timeout=30,
                          retry_delay_seconds=0).run(stop_when_idle=True)
    # THEN each delivery failed and was kept, never deleted; the message is now in the dead-letter queue
    assert dict(stats.outcomes) == {"failed": 2}
    assert (stats.deleted, stats.returned) == (0, 2)
    assert (_depth(sqs, url), _depth(sqs, dlq)) == (0, 1)
    # AND the journal says failed, with AWS's reason, and the failed action
    [event] = store.events()
    assert (event["status"], event["group"]) == ("failed", w.GROUP)  # the instance's group (its tag)
    assert "Group ghost-group not found" in event["reason"]
    actions = {a["name"]: a["status"] for a in store.actions(event["event_id"])}
    assert actions["complete-lifecycle-action"] == "failed"
    assert store.get(event["event_id"])["attempts"] == 2


def test_event_file_exits_nonzero_when_an_action_failed(world, aws, tmp_path):
    # GIVEN an event file with a lifecycle action of a group that does not exist
    path = tmp_path / "lifecycle.json"
    path.write_text(json.dumps(w.lifecycle_terminate(world.managed[0], group="ghost-group")))
    journal = tmp_path / "journal.jsonl"
    # WHEN handled
    result = spotkit(aws.url, "handle-events", "--event-file", str(path), "--journal-file", str(journal), "--yes")
    # THEN the row says failed, the command exits 1 with the reason and a next step
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.startswith(f"failed      asg-lifecycle-terminate {world.managed[0]}: ")
    assert "complete-lifecycle-action=failed" in result.stdout
    err = result.stderr.splitlines()
    assert err[-2].startswith(f"Error: 1 of 1 event(s) not handled: the event (id {json.loads(path.read_text())['id']}) "
                              f"({world.managed[0]}) failed: complete-lifecycle-action for {world.managed[0]} failed: ")
    assert "Group ghost-group not found" in err[-2]
    assert err[-1] == f"  next: fix what the reason says, then run the same command again (the journal lets a " \
                      f"failed event be handled again): spotkit handle-events --event-file {path}"
    # AND the journal holds it as failed, and status reports it so
    [event] = LocalFileStore(journal).events()
    assert event["status"] == "failed"
    shown = spotkit(aws.url, "status", "--journal-file", str(journal))
    assert shown.returncode == 0, shown.stderr
    assert f"{w.GROUP}: " in shown.stdout
    assert f"asg-lifecycle-terminate {world.managed[0]} (failed: complete-lifecycle-action for " in shown.stdout


def test_until_empty_exits_nonzero_when_an_event_failed(world, aws, tmp_path):
    # GIVEN a failing lifecycle action on the queue
    sqs, url, dlq = _queue_with_dlq(world, max_receive=2)
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps(w.lifecycle_terminate(world.managed[0], group="ghost-group")))
    # WHEN `handle-events --until-empty` consumes it (until the queue is empty: retries included)
    result = spotkit(aws.url, "handle-events", "--queue-url", url, "--journal-table", w.TABLE, "--until-empty", "--yes",
                     "--wait-seconds", "1", cwd=tmp_path)
    # THEN each delivery failed and was kept for its retry, until the queue moved it to the dead-letter queue,
    # and the exit code says so
    assert result.returncode == 1, result.stderr
    assert result.stdout.strip() == "done: received 2, deleted 0, returned 2; outcomes: failed 2"
    assert (f"WARNING failed asg-lifecycle-terminate {world.managed[0]} (group {w.GROUP}), kept for retry: "
            f"complete-lifecycle-action for {world.managed[0]} failed: ") in result.stderr
    [message_id] = {line.split("message ", 1)[1].split(":", 1)[0] for line in result.stderr.splitlines()
                    if line.startswith("Error: 1 message(s) not handled: message ")}
    assert f"message {message_id}: failed (complete-lifecycle-action for {world.managed[0]} failed: " in result.stderr
    assert result.stderr.splitlines()[-1] == (f"  next: see why with 'spotkit status --journal-table {w.TABLE}'; once "
                                              "the cause is fixed, the retry acts (a message that keeps failing ends in "
                                              "the dead-letter queue; an unreadable one is journaled and deleted)")
    assert _depth(sqs, url) == 0 and _depth(sqs, dlq) == 1


def test_lambda_reports_a_failed_action_for_retry(world):
    from spotkit.runtime.interruption import lambda_entry

    handler = lambda_entry.build_handler({"SPOTKIT_JOURNAL_TABLE": w.TABLE, "SPOTKIT_CHECKPOINT_COMMAND": ""},
                                         client_factory=world.clients.factory)
    handler.settings = HandlerSettings(checkpoint_command="", drain_poll_seconds=0.01)
    records = [{"messageId": "ok", "body": json.dumps(w.spot_warning(world.managed[0]))},
               {"messageId": "ghost", "body": json.dumps(w.lifecycle_terminate(world.managed[1], group="ghost-group"))}]
    assert lambda_entry.handle({"Records": records}, None, handler) == {"batchItemFailures": [{"itemIdentifier": "ghost"}]}
    # a direct (asynchronous) invocation raises, so Lambda retries it
    with pytest.raises(RuntimeError) as err:
        lambda_entry.handle(w.lifecycle_terminate(world.managed[1], group="ghost-group"), None, handler)
    assert str(err.value).startswith(f"failed: complete-lifecycle-action for {world.managed[1]} failed: ")


# --- dropped messages ----------------------------------------------------------------------------

def test_dropped_messages_are_journaled_with_their_reason(world):
    # GIVEN garbage and an application's event that borrows AWS's detail type
    forged = {**w.spot_warning(world.managed[0]), "source": "my.app"}
    sqs, url, _ = _queue_with_dlq(world)
    for body in ("garbage", json.dumps(forged)):
        sqs.send_message(QueueUrl=url, MessageBody=body)
    store = DynamoDBStore(world.clients.dynamodb, w.TABLE)
    # WHEN consumed
    stats = QueueConsumer(sqs, url, _handler(world, store), concurrency=1, visibility_timeout=30).run(stop_when_idle=True)
    # THEN both were deleted as drops, and the journal keeps each with why
    assert (dict(stats.outcomes), stats.deleted) == ({"dropped": 2}, 2)
    assert store.get(dropped_id("garbage"))["reason"].startswith("message body is not JSON: ")
    assert store.get(dropped_id(json.dumps(forged)))["reason"] == (
        "EC2 Spot Instance Interruption Warning: source 'my.app' is not 'aws.ec2'; only AWS sends this warning, "
        "so this is another application's event")
    # AND nothing was done to the instance
    assert not world.clients.ssm.list_commands(InstanceId=world.managed[0])["Commands"]


# --- the journal table is checked first -----------------------------------------------------------

def test_a_wrong_journal_table_stops_before_the_first_message(world, aws):
    sqs, url, _ = _queue_with_dlq(world)
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps(w.spot_warning(world.managed[0])))
    # WHEN consuming with a table that does not exist
    result = spotkit(aws.url, "handle-events", "--queue-url", url, "--journal-table", "no-such-table", "--until-empty",
                     "--yes")
    # THEN it stops at once, saying so, and the message was not received
    assert result.returncode == 1
    assert result.stderr.splitlines()[-2:] == [
        f"Error: journal table 'no-such-table' does not exist in us-east-1 at {aws.url}",
        f"  next: aws dynamodb list-tables --region us-east-1 --endpoint-url {aws.url}   # the tables here; pass the "
        "stack's interruption_journal_table output as --journal-table"]
    assert "start: consuming" not in result.stderr
    a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
    assert a["ApproximateNumberOfMessages"] == "1"
    # AND a table that is not a journal (another key) is refused the same way
    world.clients.dynamodb.create_table(TableName="orders", BillingMode="PAY_PER_REQUEST",
                                        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                                        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}])
    other = spotkit(aws.url, "handle-events", "--queue-url", url, "--journal-table", "orders", "--until-empty", "--yes")
    assert other.returncode == 1
    assert other.stderr.splitlines()[-2].startswith("Error: table 'orders' is not a spotkit journal (its key is not pk + sk)")


@pytest.mark.slow  # retries a dead endpoint before it gives up: seconds
def test_a_dead_endpoint_ends_with_a_clear_error(tmp_path):
    # GIVEN an endpoint nothing listens on
    dead = f"http://127.0.0.1:{free_port()}"
    # WHEN the journal table is checked there
    table = spotkit(dead, "handle-events", "--queue-url", f"{dead}/123456789012/q", "--journal-table", w.TABLE,
                    "--until-empty", "--yes")
    # THEN a few attempts, then a clear error
    assert table.returncode == 1
    assert table.stderr.splitlines()[-2].startswith(f"Error: cannot reach DynamoDB in us-east-1 at {dead}: ")
    key = '{"pk": {"S": "spotkit:journal-check"}, "sk": {"S": "event"}}'
    assert table.stderr.splitlines()[-1] == (
        f"  next: aws dynamodb get-item --table-name {w.TABLE} --key '{key}' --region us-east-1 --endpoint-url {dead}"
        "   # does DynamoDB answer from here? then run the same command again")
    # AND with a local journal, the consumer's first look at the queue stops it (a wrong endpoint is not an
    # outage to ride out for 15 minutes)
    queue = spotkit(dead, "handle-events", "--queue-url", f"{dead}/123456789012/q", "--journal-file",
                    str(tmp_path / "j.jsonl"), "--until-empty", "--yes")
    assert queue.returncode == 1
    assert queue.stderr.splitlines()[-2].startswith(f"Error: cannot reach {dead}/123456789012/q: ")
    assert queue.stderr.splitlines()[-1] == (
        f"  next: aws sqs get-queue-attributes --queue-url {dead}/123456789012/q --attribute-names QueueArn "
        f"--region us-east-1 --endpoint-url {dead}   # does the queue answer from here? then run the same command "
        "again (messages stay on the queue until handled)")


def test_a_hint_names_aws_itself_by_region_alone_and_quotes_what_the_shell_would_split():
    # GIVEN a client of AWS itself and one of an emulator
    import boto3

    from spotkit.runtime.interruption.hints import aws_cli

    def client(**kw):
        return boto3.client("dynamodb", region_name="eu-west-1", aws_access_key_id="k", aws_secret_access_key="s", **kw)

    # WHEN a hint is made for each THEN AWS's own endpoint is left out, another is named, and the JSON key is one word
    assert aws_cli(client(), "dynamodb", "get-item", "--key", '{"pk": 1}') == \
        "aws dynamodb get-item --key '{\"pk\": 1}' --region eu-west-1"
    assert aws_cli(client(endpoint_url="http://127.0.0.1:4566"), "dynamodb", "list-tables", note="then again") == \
        "aws dynamodb list-tables --region eu-west-1 --endpoint-url http://127.0.0.1:4566   # then again"


def test_consumer_gives_up_at_once_on_a_queue_that_does_not_exist(aws):
    sqs = aws.client("sqs")
    consumer = QueueConsumer(sqs, f"{aws.url}/123456789012/no-such-queue", handler=None, concurrency=1,
                             receive_backoff_seconds=0)
    with pytest.raises(ConsumerError) as err:
        consumer.run(stop_when_idle=True)
    assert str(err.value).startswith(f"cannot receive from {aws.url}/123456789012/no-such-queue: ")
    assert err.value.hint == (f"aws sqs list-queues --region us-east-1 --endpoint-url {aws.url}   # the queues these "
                              "credentials see here; pass the stack's interruption_queue_url output as --queue-url")
    assert consumer.stats.received == 0


# --- the local journal survives a torn line -------------------------------------------------------

def test_a_torn_local_journal_line_is_skipped_and_reported(world, aws, tmp_path):
    # GIVEN a local journal whose last line a killed writer cut off
    journal = tmp_path / "journal.jsonl"
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    first.write_text(json.dumps(w.spot_warning(world.managed[0])))
    second.write_text(json.dumps(w.spot_warning(world.managed[1])))
    assert spotkit(aws.url, "handle-events", "--event-file", str(first), "--journal-file", str(journal),
                   "--yes").returncode == 0
    text = journal.read_text()
    lines = text.splitlines(keepends=True)
    journal.write_text("".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])  # the finish row, half written
    # WHEN the next run handles another event
    result = spotkit(aws.url, "handle-events", "--event-file", str(second), "--journal-file", str(journal), "--yes")
    # THEN it works, and says which line it skipped
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"acted       spot-interruption {world.managed[1]}: ")
    assert f"note: journal {journal}: skipped 1 unreadable line(s) (line {len(lines)}: cut off (no end of line))" \
        in result.stderr
    # AND every later reader reads every whole line: the new rows were not glued to the torn one
    store = LocalFileStore(journal)
    events = {e["instance_id"]: e["status"] for e in store.events()}
    assert events == {world.managed[0]: "claimed", world.managed[1]: "done"}
    assert [n for n, _ in store.skipped_lines] == [len(lines)]
    assert all(json.loads(line) for line in journal.read_text().splitlines()[len(lines):])
