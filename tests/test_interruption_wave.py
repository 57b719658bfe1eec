"""A wave of notices handled in batches (issue 17), over the wire against the moto server: the batched
AWS calls counted per operation with botocore events, the end state, the Lambda's partial batch
response, duplicates inside one batch, and the Lambda/queue sizing the module synthesizes."""

from __future__ import annotations

import json
import warnings
from collections import Counter

import pytest

from spotkit.constructs.interruption_events import InterruptionEvents, InterruptionEventsSettings
from tests.support import interruption_world as w
from spotkit.rehearsal.local.control import completed_lifecycle_actions
from tests.support.synth import one, synth_construct
from spotkit.errors import ValidationError
from spotkit.runtime.interruption import lambda_entry
from spotkit.runtime.interruption.actions import Clients
from spotkit.runtime.interruption.events import from_eventbridge
from spotkit.runtime.interruption.handler import Handler, HandlerSettings
from spotkit.runtime.interruption.store import DynamoDBStore

CHECKPOINT = "/opt/spotkit/hooks/checkpoint"
T6, T7 = "00000006-0000-4000-8000-000000000000", "00000007-0000-4000-8000-000000000000"  # lifecycle tokens


class Calls:
    """AWS calls per operation, counted by a botocore ``before-call`` hook on every client; the
    parameters of every DescribeTargetHealth and DeregisterTargets are kept."""

    def __init__(self):
        self.count: Counter = Counter()
        self.params: dict[str, list[dict]] = {"DescribeTargetHealth": [], "DeregisterTargets": []}

    def attach(self, client):
        client.meta.events.register("before-call.*.*", self._count)
        client.meta.events.register("before-parameter-build.*.*", self._params)
        return client

    def _count(self, event_name, **_):
        self.count[event_name.split(".", 2)[2]] += 1

    def _params(self, event_name, params=None, **_):
        op = event_name.split(".", 2)[2]
        if op in self.params:
            self.params[op].append(json.loads(json.dumps(params or {})))


@pytest.fixture()
def world(aws):
    return w.build_world(aws, managed=10, unmanaged=1)


def _counted(world, aws) -> tuple[Clients, Calls]:
    calls = Calls()
    return Clients(factory=lambda service: calls.attach(aws.client(service))), calls


def _handler(clients, **kw) -> Handler:
    return Handler(clients, DynamoDBStore(clients.dynamodb, w.TABLE),
                   HandlerSettings(checkpoint_command=CHECKPOINT, drain_poll_seconds=0.01, **kw), sleep=lambda s: None)


def _targets(world) -> set[str]:
    return {h["Target"]["Id"] for h in world.clients.elbv2.describe_target_health(
        TargetGroupArn=world.target_group_arn)["TargetHealthDescriptions"]}


def _ecs_status(world) -> dict[str, str]:
    arns = list(world.container_instances.values())
    described = world.clients.ecs.describe_container_instances(cluster=w.CLUSTER, containerInstances=arns)
    return {ci["ec2InstanceId"]: ci["status"] for ci in described["containerInstances"]}


def _commands(world) -> list[dict]:
    return world.clients.ssm.list_commands()["Commands"]


def test_a_batch_of_ten_mixed_notices_makes_the_batched_calls(world, aws):
    # GIVEN ten notices for ten managed instances: 6 spot warnings, 2 terminate lifecycle actions, a
    # capacity-reservation warning and a state change to shutting-down
    m = world.managed
    bodies = [json.dumps(w.spot_warning(i)) for i in m[:6]]
    bodies += [json.dumps(w.lifecycle_terminate(m[6], token=T6)), json.dumps(w.lifecycle_terminate(m[7], token=T7))]
    bodies += [json.dumps(w.capacity_reservation_warning(m[8])), json.dumps(w.state_change(m[9], "shutting-down"))]
    clients, calls = _counted(world, aws)
    # WHEN they are handled as one batch
    results = _handler(clients).handle_batch(bodies)
    # THEN every event acted, each with its own journaled actions
    assert [[o.status for o in outs] for outs in results] == [["acted"]] * 10
    spot = results[0][0]
    assert {a.name: a.status for a in spot.actions} == {"deregister-targets": "done", "ecs-drain": "done", "checkpoint": "done"}
    life = results[6][0]
    assert [a.name for a in life.actions] == ["deregister-targets", "ecs-drain", "checkpoint", "wait-drained",
                                              "complete-lifecycle-action"]
    assert all(a.status == "done" for a in life.actions), [a.message for a in life.actions]
    state = results[9][0]
    assert {a.name: a.status for a in state.actions} == {"deregister-targets": "done", "ecs-drain": "done"}
    journal = DynamoDBStore(world.clients.dynamodb, w.TABLE)
    assert journal.get(spot.event_id)["status"] == "done"
    assert sorted(a["name"] for a in journal.actions(spot.event_id)) == ["checkpoint", "deregister-targets", "ecs-drain"]
    # AND the AWS work was shared by the batch: one call per resource, not one per notice (plus, for the
    # two lifecycle actions only, one drained-check each: target health, ECS tasks, the command's status)
    assert calls.count["DescribeInstances"] == 1
    # target health: the group's registrations (ports) once a minute, the batch's targets once, and the
    # two lifecycle drained-checks
    assert calls.count["DescribeTargetHealth"] == 1 + 1 + 2 and calls.count["DeregisterTargets"] == 1
    assert calls.count["ListContainerInstances"] == 1 + 2
    assert calls.count["UpdateContainerInstancesState"] == 1  # ten container instances, ten per call
    assert calls.count["DescribeContainerInstances"] == 0 + 2
    assert calls.count["GetCommandInvocation"] == 0 + 2
    assert calls.count["SendCommand"] == 1  # nine checkpoints (not the state change): up to 50 per call
    assert calls.count["ListCommands"] == 0  # first deliveries: the journal claim is the once-only guard
    assert calls.count["CompleteLifecycleAction"] == 2  # per instance: there is no batch call
    assert calls.count["UpdateItem"] == 10  # one conditional claim per event, nothing read back
    assert calls.count["GetItem"] == 0
    assert calls.count["BatchWriteItem"] == 2  # 30 action records + 10 finishes, 25 per call
    # AND the end state is right
    assert not _targets(world) & set(m)
    assert set(_ecs_status(world).values()) == {"DRAINING"}
    [command] = _commands(world)
    assert sorted(command["InstanceIds"]) == sorted(m[:9])
    assert sorted((c["instance_id"], c["token"]) for c in completed_lifecycle_actions()) == sorted([(m[6], T6), (m[7], T7)])


def test_duplicates_in_one_batch_act_once(world, aws):
    # GIVEN a batch with the same warning three times (three deliveries) and another instance's once
    a, b = world.managed[:2]
    same = json.dumps(w.spot_warning(a))
    clients, calls = _counted(world, aws)
    # WHEN handled as one batch
    results = _handler(clients).handle_batch([same, json.dumps(w.spot_warning(b)), same, same])
    # THEN the first copy acted, the later copies are duplicates (their messages are deleted too)
    assert [[o.status for o in outs] for outs in results] == [["acted"], ["acted"], ["duplicate"], ["duplicate"]]
    assert all(o.delete_message for outs in results for o in outs)
    # AND the event was claimed once, deregistered once and checkpointed once
    assert calls.count["UpdateItem"] == 2
    [command] = _commands(world)
    assert sorted(command["InstanceIds"]) == sorted([a, b])


def test_a_redelivered_event_does_not_checkpoint_twice(world, aws):
    # GIVEN a warning handled once, whose claim is then released as if that worker had failed
    victim = world.managed[0]
    clients, calls = _counted(world, aws)
    handler = _handler(clients)
    [[first]] = handler.handle_batch([json.dumps(w.spot_warning(victim))])
    handler.store.finish(first.event_id, "failed", "worker died")
    # WHEN the message is delivered again
    [[again]] = handler.handle_batch([json.dumps(w.spot_warning(victim))])
    # THEN the redelivery looked for its checkpoint first (attempts 2) and found it
    assert again.status == "acted"
    assert {a.name: a.status for a in again.actions}["checkpoint"] == "skipped"
    assert calls.count["ListCommands"] == 1
    assert len(_commands(world)) == 1


def test_lambda_reports_only_the_bad_message_of_ten(world, aws):
    # GIVEN a Lambda batch of ten: nine warnings for managed instances, one whose event another worker holds
    sqs = world.clients.get("sqs")
    url = sqs.create_queue(QueueName="interruptions")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    bodies = [json.dumps(w.spot_warning(i)) for i in world.managed[:9]] + [json.dumps(w.spot_warning(world.managed[9]))]
    for k, body in enumerate(bodies):
        sqs.send_message(QueueUrl=url, MessageBody=body)
    received = []
    while len(received) < 10:
        received += sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=600)["Messages"]
    records = [{"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
                "eventSourceARN": arn} for m in received]
    handler = lambda_entry.build_handler({"SPOTKIT_JOURNAL_TABLE": w.TABLE, "SPOTKIT_CHECKPOINT_COMMAND": CHECKPOINT},
                                         client_factory=world.clients.factory)
    busy = next(r for r in records if world.managed[9] in r["body"])
    assert handler.store.claim(from_eventbridge(json.loads(busy["body"]))[0]) == "new"
    # WHEN the Lambda handles the batch
    result = lambda_entry.handle({"Records": records}, None, handler)
    # THEN only the held one is reported; the nine acted
    assert result == {"batchItemFailures": [{"itemIdentifier": busy["messageId"]}]}
    assert not _targets(world) & set(world.managed[:9])
    assert world.managed[9] in _targets(world)
    # AND the reported one was made visible again soon (not after 6x the function timeout)
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"])
    assert attrs["Attributes"]["ApproximateNumberOfMessagesNotVisible"] == "10"  # none deleted: the Lambda service does that
    assert lambda_entry._queue_url(arn).endswith("/123456789012/interruptions")


# --- the Lambda sized for a wave ----------------------------------------------------------------

def _synth(**kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        doc, _ = synth_construct(lambda st: InterruptionEvents(st, "ie", name="llm", groups=["llm-a"],
                                                               settings=InterruptionEventsSettings(**kw)))
    return doc


def test_lambda_and_queue_are_sized_for_a_wave():
    doc = _synth()
    function = one(doc, "aws_lambda_function")
    mapping = one(doc, "aws_lambda_event_source_mapping")
    queue = next(q for q in doc["resource"]["aws_sqs_queue"].values() if q["name"] == "llm-interruptions")
    assert function["timeout"] == 360
    assert function["reserved_concurrent_executions"] == 10
    assert mapping["batch_size"] == 10
    assert mapping["maximum_batching_window_in_seconds"] == 1
    assert mapping["function_response_types"] == ["ReportBatchItemFailures"]
    assert mapping["scaling_config"] == {"maximum_concurrency": 10}
    assert queue["visibility_timeout_seconds"] == 6 * function["timeout"]


def test_no_reservation_still_caps_the_pollers():
    doc = _synth(lambda_reserved_concurrency=None, lambda_timeout_seconds=120, batch_size=50,
                 maximum_batching_window_seconds=2)
    assert "reserved_concurrent_executions" not in one(doc, "aws_lambda_function")
    mapping = one(doc, "aws_lambda_event_source_mapping")
    assert mapping["scaling_config"] == {"maximum_concurrency": 10}
    assert (mapping["batch_size"], mapping["maximum_batching_window_in_seconds"]) == (50, 2)
    queue = next(q for q in doc["resource"]["aws_sqs_queue"].values() if q["name"] == "llm-interruptions")
    assert queue["visibility_timeout_seconds"] == 720


@pytest.mark.parametrize("kwargs, message", [
    ({"batch_size": 20, "maximum_batching_window_seconds": 0}, "batch_size 20 needs maximum_batching_window_seconds"),
    ({"batch_size": 101}, "batch_size must be between 1 and 100"),
    ({"lambda_reserved_concurrency": 1}, "lambda_reserved_concurrency must be between 2 and 1000"),
    ({"maximum_batching_window_seconds": 301}, "maximum_batching_window_seconds must be between 0 and 300"),
])
def test_wave_settings_are_validated(kwargs, message):
    with pytest.raises(ValidationError) as err:
        _synth(**kwargs)
    assert message in str(err.value)


def test_a_batch_with_the_local_journal_file(world, aws, tmp_path):
    # GIVEN the JSON-lines journal (spotkit handle-events without --journal-table)
    from spotkit.runtime.interruption.store import LocalFileStore

    a, b = world.managed[:2]
    store = LocalFileStore(tmp_path / "journal.jsonl")
    handler = Handler(world.clients, store, HandlerSettings(checkpoint_command=CHECKPOINT))
    # WHEN a batch with a duplicate is handled, and then the same warning again in a later batch
    first = handler.handle_batch([w.spot_warning(a), w.spot_warning(b), w.spot_warning(a)])
    later = handler.handle_batch([w.spot_warning(a)])
    # THEN it acted once per event, journaled every action, and the later copy is a duplicate
    assert [[o.status for o in outs] for outs in first] == [["acted"], ["acted"], ["duplicate"]]
    assert later[0][0].status == "duplicate"
    event_id = first[0][0].event_id
    assert store.get(event_id)["status"] == "done" and store.get(event_id)["attempts"] == 1
    assert sorted(r["name"] for r in store.actions(event_id)) == ["checkpoint", "deregister-targets", "ecs-drain"]


def test_a_failed_action_fails_only_its_event(world, aws):
    # GIVEN a batch: a spot warning, and a lifecycle action of a group that does not exist (completing it fails)
    a, b = world.managed[:2]
    clients, _ = _counted(world, aws)
    handler = _handler(clients)
    # WHEN handled as one batch
    [[good], [bad]] = handler.handle_batch([w.spot_warning(a), w.lifecycle_terminate(b, token=T6, group="no-such-group")])
    # THEN the spot warning acted and its message is deleted
    assert good.status == "acted" and good.delete_message
    # AND only the lifecycle event is kept for retry, journaled failed with the error of its failed action
    assert not bad.delete_message and bad.status in ("failed", "retry")
    assert {a.name: a.status for a in bad.actions}["complete-lifecycle-action"] == "failed"
    assert "complete-lifecycle-action for" in bad.reason
    journal = DynamoDBStore(world.clients.dynamodb, w.TABLE)
    assert journal.get(bad.event_id)["status"] == "failed"
    assert journal.get(good.event_id)["status"] == "done"
    failed = [r for r in journal.actions(bad.event_id) if r["name"] == "complete-lifecycle-action"]
    assert [r["status"] for r in failed] == ["failed"] and failed[0]["detail"]["error"]


def test_until_empty_waits_for_a_receive_whose_answer_was_lost(world):
    # GIVEN a queue whose only message was received by someone who never answered (a lost receive, a
    # timeout): it is invisible for 3 s, then comes back
    from spotkit.runtime.interruption.consumer import QueueConsumer

    sqs = world.clients.get("sqs")
    url = sqs.create_queue(QueueName="interruptions")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps(w.spot_warning(world.managed[0])))
    assert sqs.receive_message(QueueUrl=url, VisibilityTimeout=3)["Messages"]
    # WHEN the consumer runs until the queue is empty
    stats = QueueConsumer(sqs, url, _handler(world.clients), concurrency=2, visibility_timeout=30,
                          wait_seconds=1).run(stop_when_idle=True)
    # THEN it did not stop while the message was invisible: it handled and deleted it
    assert (stats.received, stats.deleted, dict(stats.outcomes)) == (1, 1, {"acted": 1})


def test_target_health_is_read_for_the_batch_not_the_whole_group(world, aws):
    # GIVEN a group with ten managed and one unmanaged instance registered, and two batches of notices
    # for three and then two of the managed instances
    m = world.managed
    clients, calls = _counted(world, aws)
    handler = _handler(clients)
    first, second = m[:3], m[3:5]
    # WHEN both batches are handled by one handler
    handler.handle_batch([json.dumps(w.spot_warning(i)) for i in first])
    handler.handle_batch([json.dumps(w.spot_warning(i)) for i in second])
    # THEN the whole group was read once (the ports its targets are registered on), and each batch's
    # DescribeTargetHealth named only that batch's instances
    reads = calls.params["DescribeTargetHealth"]
    assert [r for r in reads if not r.get("Targets")] == [{"TargetGroupArn": world.target_group_arn}]
    named = [sorted({t["Id"] for t in r["Targets"]}) for r in reads if r.get("Targets")]
    assert named == [sorted(first), sorted(second)]
    # AND each batch deregistered exactly its own instances, on the port they were registered on
    deregistered = [sorted((t["Id"], t.get("Port")) for t in r["Targets"]) for r in calls.params["DeregisterTargets"]]
    assert deregistered == [sorted((i, 8080) for i in first), sorted((i, 8080) for i in second)]
    # AND every other target is still registered, the unmanaged one included
    assert _targets(world) == set(m[5:]) | set(world.unmanaged)


def test_a_target_on_another_port_than_the_groups_is_deregistered(world, aws):
    # GIVEN an instance registered on an ephemeral port (ECS bridge networking), not the group's 8080
    victim, neighbour = world.managed[:2]
    elbv2 = world.clients.elbv2
    elbv2.deregister_targets(TargetGroupArn=world.target_group_arn, Targets=[{"Id": victim}])
    elbv2.register_targets(TargetGroupArn=world.target_group_arn, Targets=[{"Id": victim, "Port": 32768}])
    clients, calls = _counted(world, aws)
    # WHEN its spot warning is handled in a batch
    [[out]] = _handler(clients).handle_batch([json.dumps(w.spot_warning(victim))])
    # THEN the batch asked about that port and deregistered the registration on it
    assert out.status == "acted" and {a.name: a.status for a in out.actions}["deregister-targets"] == "done"
    [asked] = [r["Targets"] for r in calls.params["DescribeTargetHealth"] if r.get("Targets")]
    assert {"Id": victim, "Port": 32768} in asked
    assert calls.params["DeregisterTargets"] == [{"TargetGroupArn": world.target_group_arn,
                                                  "Targets": [{"Id": victim, "Port": 32768}]}]
    # AND its neighbour is still registered
    assert victim not in _targets(world) and neighbour in _targets(world)


def test_batch_targets_name_each_instance_and_every_port_it_was_seen_on():
    from spotkit.runtime.interruption.actions import batch_targets

    assert batch_targets(["i-1", "i-2"], {"i-2": {32768, 8080}, "i-9": {80}}) == [
        {"Id": "i-1"}, {"Id": "i-2"}, {"Id": "i-2", "Port": 8080}, {"Id": "i-2", "Port": 32768}]
    assert batch_targets(["i-1"]) == [{"Id": "i-1"}]
