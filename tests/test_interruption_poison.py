"""Every message settles on its own (issue 25): a message whose fields have the wrong JSON type is dropped
with its reason (journaled), never a TypeError that fails its batch-mates; a message that fails for a bug
is kept alone for retry (then the dead-letter queue); ``--until-empty`` and ``--event-file`` name it.
Against the moto server; the CLI in its own process where the exit code is the point."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.support import interruption_world as w
from spotkit.runtime.interruption import events as ev
from spotkit.runtime.interruption import lambda_entry
from spotkit.runtime.interruption.events import DropEvent
from spotkit.runtime.interruption.handler import Handler, HandlerSettings
from spotkit.runtime.interruption.store import DynamoDBStore, LocalFileStore

ENV = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
       "AWS_DEFAULT_REGION": "us-east-1", "SPOTKIT_JOURNAL_TABLE": ""}
I = "i-0123456789abcdef0"


def _spot(**changes) -> dict:
    event = w.spot_warning(I)
    for path, value in changes.items():
        where = event
        *parents, last = path.split("__")
        for p in parents:
            where = where[p]
        where[last] = value
    return event


# --- typed parsing: any wrong JSON type is a drop naming the field ---------------------------------

@pytest.mark.parametrize("body, reason", [
    (_spot(**{"detail-type": ["EC2 Spot Instance Interruption Warning"]}),
     "EventBridge event: 'detail-type' is a JSON array, not a string"),
    (_spot(source={"aws": "ec2"}), "EventBridge event: 'source' is a JSON object, not a string"),
    (_spot(**{"detail__instance-id": ["i-1"]}),
     "EC2 Spot Instance Interruption Warning: 'instance-id' is a JSON array, not a string"),
    (_spot(**{"detail__instance-action": 7}),
     "EC2 Spot Instance Interruption Warning: 'instance-action' is a JSON number, not a string"),
    (_spot(time=1700000000), "EC2 Spot Instance Interruption Warning: 'time' is a JSON number, not a string"),
    (_spot(region=["us-east-1"]), "EC2 Spot Instance Interruption Warning: 'region' is a JSON array, not a string"),
    (_spot(account=123456789012), "EC2 Spot Instance Interruption Warning: 'account' is a JSON number, not a string"),
    (_spot(resources={"arn": "x"}), "EC2 Spot Instance Interruption Warning: 'resources' is a JSON object, not an array"),
    (_spot(detail="i-1"), "EC2 Spot Instance Interruption Warning: event has no detail object"),
    ({**w.health_scheduled([I]), "detail": {**w.health_scheduled([I])["detail"], "affectedEntities": "i-1"}},
     "AWS Health Event: 'affectedEntities' is a JSON string, not an array"),
    ({**w.state_change(I, "stopping"), "detail": {"instance-id": I, "state": ["stopping"]}},
     "EC2 Instance State-change Notification: 'state' is a JSON array, not a string"),
    ({"Type": "Notification", "Message": ["x"]}, "SNS notification: 'Message' is a JSON array, not a string"),
    ({"event_id": "e1", "kind": "spot-interruption", "instance_id": ["i-1"], "source": "imds",
      "issued_at": "2026-01-01T00:00:00Z", "deadline": "2026-01-01T00:02:00Z"},
     "spotkit event: 'instance_id' is a JSON array, not a string"),
    ({"event_id": "e1", "kind": "spot-interruption", "instance_id": "i-1", "source": "imds",
      "issued_at": "2026-01-01T00:00:00Z", "deadline": "2026-01-01T00:02:00Z", "lifecycle": ["x"]},
     "spotkit event: 'lifecycle' is a JSON array, not an object"),
])
def test_a_wrong_json_type_is_a_drop_naming_the_field(body, reason):
    # GIVEN an event with one field of the wrong JSON type WHEN parsed (as the SQS body text)
    # THEN it is a drop whose reason names the field and the type, never a TypeError
    with pytest.raises(DropEvent) as err:
        ev.from_message_body(json.dumps(body))
    assert not isinstance(err.value, ev.IgnoreEvent)
    assert str(err.value) == reason


# --- a batch: nine good warnings and one poisoned message -------------------------------------------

@pytest.fixture()
def world(aws):
    return w.build_world(aws, managed=9, unmanaged=0, ecs=False)


def _handler(world) -> Handler:
    return Handler(world.clients, DynamoDBStore(world.clients.dynamodb, w.TABLE),
                   HandlerSettings(checkpoint_command="", drain_poll_seconds=0.01), sleep=lambda s: None)


def _targets(world) -> set[str]:
    health = world.clients.elbv2.describe_target_health(TargetGroupArn=world.target_group_arn)
    return {h["Target"]["Id"] for h in health["TargetHealthDescriptions"]}


def _poisoned(world) -> list[str]:
    """Nine spot warnings and, fifth, one whose detail-type is a list (the case that raised TypeError)."""
    bodies = [json.dumps(w.spot_warning(i)) for i in world.managed]
    bad = w.spot_warning(world.managed[0])
    bad["detail-type"] = [bad["detail-type"]]
    return bodies[:4] + [json.dumps(bad)] + bodies[4:]


def test_one_malformed_message_does_not_sink_its_batch(world):
    # GIVEN a batch of nine valid warnings and one with a list where a string belongs
    handler = _handler(world)
    # WHEN the batch is handled together
    results = handler.handle_batch(_poisoned(world))
    # THEN the nine are acted on (deregistered), the bad one alone is dropped as unreadable, with its reason,
    statuses = [[o.status for o in row] for row in results]
    assert statuses == [["acted"]] * 4 + [["dropped"]] + [["acted"]] * 5
    [bad] = results[4]
    assert bad.malformed and bad.reason == "EventBridge event: 'detail-type' is a JSON array, not a string"
    assert _targets(world) == set()
    # AND the journal keeps the dropped message with that reason
    store = DynamoDBStore(world.clients.dynamodb, w.TABLE)
    assert store.get(bad.event_id)["status"] == "dropped"
    assert store.get(bad.event_id)["reason"] == bad.reason


def test_lambda_acts_on_the_batch_mates_of_a_malformed_message(world):
    # GIVEN the Lambda's handler and the same ten records
    handler = lambda_entry.build_handler({"SPOTKIT_JOURNAL_TABLE": w.TABLE, "SPOTKIT_CHECKPOINT_COMMAND": ""},
                                         client_factory=world.clients.factory)
    records = [{"messageId": f"m{n}", "body": body} for n, body in enumerate(_poisoned(world))]
    # WHEN invoked with them
    result = lambda_entry.handle({"Records": records}, None, handler)
    # THEN no message is reported for retry (the unreadable one is journaled and deleted), and all nine drained
    assert result == {"batchItemFailures": []}
    assert _targets(world) == set()


def test_lambda_reports_only_the_message_a_bug_fails(world, monkeypatch):
    # GIVEN a parser bug that one message's content triggers (not a typed drop: an exception nothing expects)
    handler = lambda_entry.build_handler({"SPOTKIT_JOURNAL_TABLE": w.TABLE, "SPOTKIT_CHECKPOINT_COMMAND": ""},
                                         client_factory=world.clients.factory)
    victim = world.managed[2]
    real = ev.from_message_body

    def buggy(body):
        if victim in str(body):
            raise RuntimeError("a bug the parser has for this message")
        return real(body)

    monkeypatch.setattr(ev, "from_message_body", buggy)
    records = [{"messageId": f"m{n}", "body": json.dumps(w.spot_warning(i))} for n, i in enumerate(world.managed)]
    # WHEN the Lambda handles the batch
    result = lambda_entry.handle({"Records": records}, None, handler)
    # THEN only that message is reported (it is retried, then goes to the dead-letter queue); the rest acted
    assert result == {"batchItemFailures": [{"itemIdentifier": "m2"}]}
    assert _targets(world) == {victim}


def test_a_failure_of_the_whole_batch_is_narrowed_to_the_event_that_causes_it(world, monkeypatch):
    # GIVEN a fault that one event triggers in the shared decision (the batch's one DescribeInstances)
    handler = _handler(world)
    victim = world.managed[3]
    real = Handler.decide

    def faulty(self, events):
        if any(e.instance_id == victim for e in events):
            raise KeyError("Reservations")
        return real(self, events)

    monkeypatch.setattr(Handler, "decide", faulty)
    # WHEN the batch of nine is handled
    results = handler.handle_batch([json.dumps(w.spot_warning(i)) for i in world.managed])
    # THEN the batch is handled again one event at a time: eight acted, the victim alone is kept for retry
    assert [row[0].status for row in results] == ["acted"] * 3 + ["retry"] + ["acted"] * 5
    assert _targets(world) == {victim}


def _spotkit(url: str, *args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "spotkit.cli.main", "--endpoint-url", url, "--region", "us-east-1",
                           *args], capture_output=True, text=True, timeout=180, env=ENV, cwd=cwd)


def test_until_empty_exits_nonzero_and_names_the_malformed_message(world, aws, tmp_path):
    # GIVEN the ten messages on a queue
    sqs = world.clients.get("sqs")
    url = sqs.create_queue(QueueName="poisoned")["QueueUrl"]
    ids = [sqs.send_message(QueueUrl=url, MessageBody=body)["MessageId"] for body in _poisoned(world)]
    # WHEN consumed until empty
    result = _spotkit(aws.url, "handle-events", "--queue-url", url, "--journal-file", str(tmp_path / "j.jsonl"),
                      "--until-empty", "--yes", "--wait-seconds", "1")
    # THEN the nine are drained, every message is deleted, and the run exits 1 naming the bad message
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert _targets(world) == set()
    assert result.stdout.strip() == "done: received 10, deleted 10, returned 0; outcomes: acted 9, dropped 1"
    assert result.stderr.splitlines()[-2] == (
        f"Error: 1 message(s) not handled: message {ids[4]}: dropped (EventBridge event: 'detail-type' is a JSON "
        "array, not a string)")


def test_event_file_with_a_malformed_event_is_a_user_error_naming_it(world, aws, tmp_path):
    # GIVEN an event file of three events, the second with a list where the instance id belongs
    bad = w.spot_warning(world.managed[1])
    bad["detail"]["instance-id"] = [world.managed[1]]
    path = tmp_path / "events.json"
    path.write_text(json.dumps([w.spot_warning(world.managed[0]), bad, w.spot_warning(world.managed[2])]))
    # WHEN handled
    result = _spotkit(aws.url, "handle-events", "--event-file", str(path), "--journal-file",
                      str(tmp_path / "j.jsonl"), "--yes")
    # THEN a user error (exit 1, no "Internal error") names the event and the field; the other two acted
    assert result.returncode == 1, result.stderr
    assert "Internal error" not in result.stderr and "Traceback" not in result.stderr
    err = result.stderr.splitlines()
    assert err[-2] == (f"Error: {path}: event 2 of 3 (id {bad['id']}) could not be read as an interruption event: "
                       "EC2 Spot Instance Interruption Warning: 'instance-id' is a JSON array, not a string")
    assert err[-1].startswith(f"  next: fix {path} (event 2 of 3 ")
    assert _targets(world) == set(world.managed[3:]) | {world.managed[1]}
    assert {e["status"] for e in LocalFileStore(tmp_path / "j.jsonl").events()} == {"done", "dropped"}
