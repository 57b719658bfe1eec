"""The handler's delivery paths against the moto server over HTTP: the SQS consumer (``spotkit
handle-events --queue-url``), the Lambda entry point (SQS event source mapping batches), and the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from botocore.exceptions import ClientError
from click.testing import CliRunner

from tests.support import interruption_world as w
from spotkit.runtime.interruption import lambda_entry
from spotkit.runtime.interruption.actions import Clients
from spotkit.runtime.interruption.consumer import QueueConsumer
from spotkit.runtime.interruption.handler import Handler, HandlerSettings
from spotkit.runtime.interruption.store import DynamoDBStore

CHECKPOINT = "/opt/spotkit/hooks/checkpoint"


@pytest.fixture()
def world(aws):
    return w.build_world(aws, managed=3, unmanaged=1)


@pytest.fixture()
def queue(world):
    sqs = world.clients.get("sqs")
    return sqs, sqs.create_queue(QueueName="interruptions")["QueueUrl"]


def _send(sqs, url, *bodies):
    for b in bodies:
        sqs.send_message(QueueUrl=url, MessageBody=b if isinstance(b, str) else json.dumps(b))


def _depth(sqs, url) -> tuple[int, int]:
    a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages",
                                                               "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return int(a["ApproximateNumberOfMessages"]), int(a["ApproximateNumberOfMessagesNotVisible"])


def _handler(world, clients=None, **kw) -> Handler:
    return Handler(clients or world.clients, DynamoDBStore(world.clients.dynamodb, w.TABLE),
                   HandlerSettings(checkpoint_command=CHECKPOINT, drain_poll_seconds=0.01, **kw), sleep=lambda s: None)


def test_consumer_settles_every_message_by_its_outcome(world, queue):
    # GIVEN a queue with two warnings for one instance, one for another, an unmanaged one and garbage
    sqs, url = queue
    a, b = world.managed[:2]
    _send(sqs, url, w.spot_warning(a), w.spot_warning(a), w.rebalance(b), w.spot_warning(world.unmanaged[0]), "garbage")
    # WHEN the consumer runs until the queue is empty (one worker, so the copy comes after the original is
    # done; a copy handled while the original is in progress returns to the queue, see the Lambda test)
    stats = QueueConsumer(sqs, url, _handler(world), concurrency=1, visibility_timeout=30).run(stop_when_idle=True)
    # THEN every message was deleted, each with the right outcome, and the work happened once
    assert (stats.received, stats.deleted, stats.returned) == (5, 5, 0)
    assert dict(stats.outcomes) == {"acted": 2, "duplicate": 1, "ignored": 1, "dropped": 1}
    assert _depth(sqs, url) == (0, 0)
    # (one batch: a's checkpoint and b's rebalance checkpoint went out in one SendCommand)
    [command] = world.clients.ssm.list_commands(InstanceId=a)["Commands"]
    assert sorted(command["InstanceIds"]) == sorted([a, b])


def test_consumer_returns_a_transient_failure_and_the_retry_acts(world, queue):
    # GIVEN an ELB client throttled on its first deregistration
    sqs, url = queue
    real = world.clients.elbv2
    calls = []

    class Throttled:
        def __getattr__(self, name):
            return getattr(real, name)

        def deregister_targets(self, **kwargs):
            calls.append(kwargs)
            if len(calls) == 1:
                raise ClientError({"Error": {"Code": "Throttling", "Message": "Rate exceeded"}}, "DeregisterTargets")
            return real.deregister_targets(**kwargs)

    clients = Clients.of(factory=world.clients.factory, elbv2=Throttled())
    _send(sqs, url, w.spot_warning(world.managed[0]))
    # WHEN consumed with an immediate retry
    consumer = QueueConsumer(sqs, url, _handler(world, clients), concurrency=1, visibility_timeout=30,
                             retry_delay_seconds=0)
    stats = consumer.run(stop_when_idle=True)
    # THEN the message came back once, and the second delivery acted and was deleted
    assert (stats.received, stats.returned, stats.deleted) == (2, 1, 1)
    assert dict(stats.outcomes) == {"retry": 1, "acted": 1}
    assert len(calls) == 2
    assert _depth(sqs, url) == (0, 0)


def test_consumer_extends_visibility_while_a_message_is_handled(world, queue):
    # GIVEN a handler that takes a while (a drain waiting for ECS tasks, say)
    sqs, url = queue
    handler = _handler(world)
    real = handler.handle_batch

    def slow(bodies, **kw):  # busy until the consumer has extended the message's visibility twice (bounded)
        end = time.monotonic() + 30
        while consumer.stats.extended < 2 and time.monotonic() < end:
            time.sleep(0.02)
        return real(bodies, **kw)

    handler.handle_batch = slow
    _send(sqs, url, w.spot_warning(world.managed[0]))
    # WHEN consumed with extensions every 0.25 s
    consumer = QueueConsumer(sqs, url, handler, concurrency=1, visibility_timeout=10, extend_every_seconds=0.25)
    stats = consumer.run(stop_when_idle=True)
    # THEN the visibility was extended while it ran, and the message was handled once
    assert stats.extended >= 2
    assert (stats.received, stats.deleted) == (1, 1)


def test_stop_finishes_the_message_in_progress_and_receives_no_more(world, queue):
    # GIVEN three messages and one worker receiving one at a time, and a stop request (what SIGTERM sends) during the first
    sqs, url = queue
    _send(sqs, url, *(w.spot_warning(i) for i in world.managed))
    handler = _handler(world)
    consumer = QueueConsumer(sqs, url, handler, concurrency=1, visibility_timeout=30, wait_seconds=1, batch_size=1)
    real = handler.handle_batch

    def stop_then_handle(bodies, **kw):
        consumer.stop()
        return real(bodies, **kw)

    handler.handle_batch = stop_then_handle
    # WHEN it runs
    stats = consumer.run()
    # THEN the message in progress was finished and deleted, and the other two are still queued
    assert (stats.received, stats.deleted) == (1, 1)
    assert _depth(sqs, url) == (2, 0)


def test_cli_consumer_exits_cleanly_on_sigterm(aws, tmp_path):
    # GIVEN `spotkit handle-events` consuming an empty queue in its own process
    sqs = aws.client("sqs")
    url = sqs.create_queue(QueueName="idle")["QueueUrl"]
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    proc = subprocess.Popen([sys.executable, "-m", "spotkit.cli.main", "--endpoint-url", aws.url, "handle-events",
                             "--queue-url", url, "--yes", "--wait-seconds", "1",
                             "--journal-file", str(tmp_path / "journal.jsonl")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    started = proc.stderr.readline()
    while started and not started.startswith("start:"):
        started = proc.stderr.readline()
    assert started.startswith(f"start: consuming {url} with 8 workers; journal: journal file ")
    # WHEN it gets SIGTERM
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    # THEN it stops on its own, exit code 0, with its summary
    assert proc.returncode == 0, err
    assert out.strip() == "done: received 0, deleted 0, returned 0; outcomes: none"


def test_lambda_batch_reports_only_messages_to_retry(world):
    # GIVEN the Lambda's handler built from its environment, and an event another worker holds
    handler = lambda_entry.build_handler({"SPOTKIT_JOURNAL_TABLE": w.TABLE, "SPOTKIT_GROUPS": w.GROUP,
                                          "SPOTKIT_CHECKPOINT_COMMAND": CHECKPOINT}, client_factory=world.clients.factory)
    busy = w.spot_warning(world.managed[1])
    from spotkit.runtime.interruption.events import from_eventbridge
    assert handler.store.claim(from_eventbridge(busy)[0]) == "new"
    records = [{"messageId": "m1", "body": json.dumps(w.spot_warning(world.managed[0]))},
               {"messageId": "m2", "body": "not json"},
               {"messageId": "m3", "body": json.dumps(busy)}]
    # WHEN invoked with the SQS batch
    result = lambda_entry.handle({"Records": records}, None, handler)
    # THEN only the message whose event is still in progress is reported for retry
    assert result == {"batchItemFailures": [{"itemIdentifier": "m3"}]}
    assert handler.settings.groups == (w.GROUP,)
    assert world.managed[0] not in {h["Target"]["Id"] for h in world.clients.elbv2.describe_target_health(
        TargetGroupArn=world.target_group_arn)["TargetHealthDescriptions"]}


def test_concurrent_claims_of_one_event_have_one_winner(world):
    # GIVEN eight workers claiming the same event at once through the journal table
    # (moto needs toolkit/rehearsal/local/patches/dynamodb.py for AWS's atomic conditional writes)
    from spotkit.runtime.interruption.events import from_eventbridge

    [event] = from_eventbridge(w.spot_warning(world.managed[0]))
    results, barrier = [], threading.Barrier(8)

    def claim():
        store = DynamoDBStore(world.clients.factory("dynamodb"), w.TABLE)
        barrier.wait()
        results.append(store.claim(event))

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # THEN exactly one may act
    assert sorted(results) == ["in-progress"] * 7 + ["new"]


def test_lambda_needs_its_journal_table():
    with pytest.raises(RuntimeError) as err:
        lambda_entry.build_handler({})
    assert str(err.value) == "SPOTKIT_JOURNAL_TABLE is not set: the stack sets it to the journal table's name"


def test_cli_event_file_dry_run_as_json(world, tmp_path, monkeypatch):
    # GIVEN an event file and the emulator as the endpoint
    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(k, v)
    path = tmp_path / "event.json"
    path.write_text(json.dumps([w.spot_warning(world.managed[0]), w.spot_warning(world.unmanaged[0])]))
    from spotkit.cli.main import cli

    # WHEN handled as a dry run with JSON output
    result = CliRunner().invoke(cli, ["--endpoint-url", world_url(world), "--region", "us-east-1", "--output", "json",
                                      "handle-events", "--event-file", str(path), "--dry-run", "--journal-table", w.TABLE])
    # THEN it says what it would do, for the managed instance only
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [(r["status"], r["instance"]) for r in rows] == [("acted", world.managed[0]), ("ignored", world.unmanaged[0])]
    assert rows[0]["actions"] == {"deregister-targets": "would", "ecs-drain": "would", "checkpoint": "would"}


def test_cli_needs_exactly_one_source():
    from spotkit.cli.main import main

    result = subprocess.run([sys.executable, "-m", "spotkit.cli.main", "handle-events", "--yes"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.splitlines()[0] == "Error: give exactly one of --queue-url and --event-file"
    assert main  # the entry point the console script uses


def world_url(world) -> str:
    return world.clients.ec2.meta.endpoint_url


def test_a_copy_of_an_event_another_worker_is_handling_waits_for_it_and_is_deleted(world, queue, aws):
    # GIVEN one spot warning delivered twice (two messages) and a consumer of two workers taking one
    # message each; the worker that claims the event first is held at its checkpoint (SendCommand) until
    # the other worker's claim of the copy has been answered (in progress elsewhere)
    sqs, url = queue
    body = json.dumps(w.spot_warning(world.managed[0]))
    _send(sqs, url, body, body)
    claims, both_claimed, sends = [], threading.Event(), []

    def claimed(**_):
        claims.append(1)
        if len(claims) >= 2:
            both_claimed.set()

    def hold_checkpoint(**_):
        sends.append(1)
        both_claimed.wait(timeout=60)

    def hooked(service):
        client = aws.client(service)
        client.meta.events.register("after-call.dynamodb.UpdateItem", claimed)
        client.meta.events.register("before-call.ssm.SendCommand", hold_checkpoint)
        return client

    clients = Clients(factory=hooked)
    handler = Handler(clients, DynamoDBStore(clients.dynamodb, w.TABLE),
                      HandlerSettings(checkpoint_command=CHECKPOINT, drain_poll_seconds=0.01), sleep=lambda s: None)
    consumer = QueueConsumer(sqs, url, handler, concurrency=2, batch_size=1, wait_seconds=1,
                             retry_delay_seconds=30, visibility_timeout=60)
    # WHEN the queue is drained
    stats = consumer.run(stop_when_idle=True)
    # THEN the copy was claimed while its original was in progress, waited for it, and was deleted as a
    # duplicate: not returned to the queue for 30 s
    assert both_claimed.is_set()
    assert stats.outcomes == {"acted": 1, "duplicate": 1}
    assert (stats.received, stats.deleted, stats.returned) == (2, 2, 0)
    assert len(sends) == 1  # one checkpoint
    assert _depth(sqs, url) == (0, 0)
