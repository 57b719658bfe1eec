"""The interruption handler against the moto server over HTTP: real boto3 clients, real calls.

moto gap: Auto Scaling CompleteLifecycleAction is not implemented in moto 5.2. The emulator adds it
(toolkit/rehearsal/local/patches/autoscaling.py, in the registry spotkit.rehearsal.local.registry.PATCHES): it
checks the group and hook exist and records each call, which these tests read back (control path).
"""

from __future__ import annotations

import json

import pytest

from tests.support import interruption_world as w
from spotkit.rehearsal.local.control import completed_lifecycle_actions
from spotkit.rehearsal.local.registry import PATCHES
from spotkit.runtime.interruption import actions as act
from spotkit.runtime.interruption.handler import Handler, HandlerSettings
from spotkit.runtime.interruption.store import DynamoDBStore, LocalFileStore

TOKEN = "6d3b3c9e-0000-4000-8000-000000000001"  # AWS tokens are 36-character UUIDs
CHECKPOINT = "/opt/spotkit/hooks/checkpoint --reason interruption"


@pytest.fixture()
def world(aws):
    return w.build_world(aws, managed=2, unmanaged=1)


def _handler(world, *, dry_run=False, store=None, **settings) -> Handler:
    store = store or DynamoDBStore(world.clients.dynamodb, w.TABLE)
    return Handler(world.clients, store, HandlerSettings(dry_run=dry_run, checkpoint_command=CHECKPOINT,
                                                         drain_poll_seconds=0.01, **settings),
                   sleep=lambda s: None)


def _targets(world) -> set[str]:
    health = world.clients.elbv2.describe_target_health(TargetGroupArn=world.target_group_arn)
    return {h["Target"]["Id"] for h in health["TargetHealthDescriptions"]}


def _ecs_status(world, instance_id) -> str:
    arn = world.container_instances[instance_id]
    return world.clients.ecs.describe_container_instances(cluster=w.CLUSTER, containerInstances=[arn])["containerInstances"][0]["status"]


def _commands(world, instance_id) -> list[dict]:
    return world.clients.ssm.list_commands(InstanceId=instance_id)["Commands"]


def test_spot_warning_deregisters_drains_checkpoints_and_journals(world):
    # GIVEN a managed instance registered in a target group and an ECS cluster
    victim, other = world.managed
    handler = _handler(world)
    # WHEN the spot interruption warning arrives as an SQS body (EventBridge event JSON)
    [outcome] = handler.handle_body(json.dumps(w.spot_warning(victim)))
    # THEN it left the target group (the others stayed), its container instance is DRAINING,
    assert outcome.status == "acted"
    assert outcome.group == w.GROUP
    assert _targets(world) == {other, *world.unmanaged}
    assert _ecs_status(world, victim) == "DRAINING"
    assert _ecs_status(world, other) == "ACTIVE"
    # the checkpoint command was sent to it, once, with the configured hook,
    [command] = _commands(world, victim)
    assert command["Parameters"] == {"commands": [CHECKPOINT]}
    assert command["DocumentName"] == "AWS-RunShellScript"
    assert command["Comment"] == f"spotkit checkpoint {outcome.event_id}"
    assert command["InstanceIds"] == [victim]
    assert _commands(world, other) == []
    # and the journal holds the event as done with each action, deregistration first
    store = DynamoDBStore(world.clients.dynamodb, w.TABLE)
    assert store.get(outcome.event_id)["status"] == "done"
    assert [(a["name"], a["status"]) for a in store.actions(outcome.event_id)] == [
        ("deregister-targets", "done"), ("ecs-drain", "done"), ("checkpoint", "done")]
    assert store.actions(outcome.event_id)[0]["detail"]["target_groups"] == [world.target_group_arn]


def test_the_same_event_twice_acts_once(world):
    # GIVEN a spot warning delivered twice (two EventBridge deliveries have different envelope ids)
    victim = world.managed[0]
    first, second = w.spot_warning(victim), w.spot_warning(victim)
    assert first["id"] != second["id"]
    handler = _handler(world)
    # WHEN both are handled
    [a] = handler.handle_body(json.dumps(first))
    [b] = handler.handle_body(json.dumps(second))
    # THEN the second is a duplicate of the same event id, and only one checkpoint command was sent
    assert (a.status, b.status) == ("acted", "duplicate")
    assert a.event_id == b.event_id
    assert b.actions == []
    assert len(_commands(world, victim)) == 1
    assert b.delete_message is True


def test_a_second_handler_sharing_the_journal_also_acts_once(world):
    # GIVEN two handlers (say, the Lambda and a queue consumer) sharing the DynamoDB journal
    victim = world.managed[0]
    one, two = _handler(world), _handler(world)
    # WHEN each receives the same warning
    [a] = one.handle_body(w.spot_warning(victim))
    [b] = two.handle_body(w.spot_warning(victim))
    # THEN exactly one acted
    assert sorted([a.status, b.status]) == ["acted", "duplicate"]
    assert len(_commands(world, victim)) == 1


def test_unmanaged_instance_is_ignored_and_untouched(world):
    # GIVEN an instance without the spotkit tags
    stranger = world.unmanaged[0]
    handler = _handler(world)
    # WHEN a spot warning for it arrives
    [outcome] = handler.handle_body(w.spot_warning(stranger))
    # THEN nothing was done to it, and the journal says why
    assert outcome.status == "ignored"
    assert outcome.reason == f"instance {stranger} is not managed by spotkit (no spotkit:managed=true or spotkit:group tag)"
    assert stranger in _targets(world)
    assert _commands(world, stranger) == []
    assert DynamoDBStore(world.clients.dynamodb, w.TABLE).get(outcome.event_id)["status"] == "ignored"


def test_instance_of_another_group_is_ignored_when_groups_are_scoped(world):
    # GIVEN a handler scoped to another group
    handler = _handler(world, groups=("inference",))
    # WHEN a warning for a train-fleet instance arrives
    [outcome] = handler.handle_body(w.spot_warning(world.managed[0]))
    # THEN it is ignored
    assert outcome.status == "ignored"
    assert outcome.reason == f"instance {world.managed[0]} is in group 'train-fleet', not one of inference"


def test_unknown_instance_is_ignored(world):
    [outcome] = _handler(world).handle_body(w.spot_warning("i-0123456789abcdef0"))
    assert (outcome.status, outcome.reason) == ("ignored", "instance i-0123456789abcdef0 does not exist in this account and region")


def test_lifecycle_action_is_completed_after_the_drain(world):
    # GIVEN a managed instance the group is terminating (lifecycle hook spotkit-drain)
    victim = world.managed[1]
    handler = _handler(world)
    # WHEN the lifecycle action event arrives
    event = w.lifecycle_terminate(victim, token=TOKEN)
    [outcome] = handler.handle_body(event)
    # THEN it was drained, then the action completed with CONTINUE (recorded by the harness extension)
    assert [a.name for a in outcome.actions] == ["deregister-targets", "ecs-drain", "checkpoint", "wait-drained",
                                                 "complete-lifecycle-action"]
    assert outcome.actions[-1].status == "done", outcome.actions[-1].message
    assert victim not in _targets(world)
    assert completed_lifecycle_actions() == [{"action": "CompleteLifecycleAction", "group": w.GROUP, "hook": w.HOOK,
                                              "instance_id": victim, "token": TOKEN, "result": "CONTINUE"}]
    assert "autoscaling CompleteLifecycleAction / RecordLifecycleActionHeartbeat" in [p.what for p in PATCHES]


def test_dry_run_changes_nothing_and_says_what_it_would_do(world, caplog):
    # GIVEN a dry-run handler
    victim = world.managed[0]
    handler = _handler(world, dry_run=True)
    # WHEN a lifecycle action arrives
    with caplog.at_level("INFO", logger="spotkit.interruption"):
        [outcome] = handler.handle_body(w.lifecycle_terminate(victim, token=TOKEN))
    # THEN every mutating step reports "would", and AWS is unchanged
    assert {a.name: a.status for a in outcome.actions} == {
        "deregister-targets": "would", "ecs-drain": "would", "checkpoint": "would", "wait-drained": "done",
        "complete-lifecycle-action": "would"}
    assert victim in _targets(world)
    assert _ecs_status(world, victim) == "ACTIVE"
    assert _commands(world, victim) == []
    assert completed_lifecycle_actions() == []
    assert f"would have deregistered {victim}" in caplog.text


def test_rebalance_checkpoints_and_starts_one_replacement(world):
    # GIVEN a handler that starts replacements early, and a group with room (desired 0 of max 4)
    victim = world.managed[0]
    handler = _handler(world, start_replacement_on_rebalance=True)
    # WHEN a rebalance recommendation arrives, and the same one again
    [outcome] = handler.handle_body(w.rebalance(victim))
    # THEN the instance stays in service, a checkpoint was asked for, the group grew by one
    assert {a.name: a.status for a in outcome.actions} == {"checkpoint": "done", "start-replacement": "done"}
    assert victim in _targets(world)
    group = world.clients.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[w.GROUP])["AutoScalingGroups"][0]
    assert group["DesiredCapacity"] == 1
    # AND calling the action directly again (idempotent by the instance tag) changes nothing
    [again] = act.start_replacements(world.clients.autoscaling, world.clients.ec2, [(victim, w.GROUP, "manual")],
                                     dry_run=False)
    assert (again.status, again.message) == ("skipped", f"a replacement for {victim} was already requested")


def test_health_event_for_two_instances_acts_on_the_managed_one(world):
    # GIVEN an EC2 retirement naming a managed and an unmanaged instance
    event = w.health_scheduled([world.managed[0], world.unmanaged[0]])
    # WHEN it is handled
    outcomes = _handler(world).handle_body(event)
    # THEN one outcome each: acted and ignored
    assert [(o.instance_id, o.status) for o in outcomes] == [(world.managed[0], "acted"), (world.unmanaged[0], "ignored")]


def test_state_change_to_shutting_down_deregisters_without_checkpoint(world):
    [outcome] = _handler(world).handle_body(w.state_change(world.managed[0], "shutting-down"))
    assert {a.name: a.status for a in outcome.actions} == {"deregister-targets": "done", "ecs-drain": "done"}


def test_malformed_message_is_dropped_not_retried(world):
    [outcome] = _handler(world).handle_body("{not json")
    assert outcome.status == "dropped"
    assert outcome.delete_message is True
    assert outcome.reason.startswith("message body is not JSON: ")


def test_transient_failure_is_retried_and_the_retry_acts(world):
    # GIVEN a journal, and an ELB client that is throttled once
    victim = world.managed[0]
    real = world.clients.elbv2

    class Throttled:
        calls = 0

        def __getattr__(self, name):
            return getattr(real, name)

        def deregister_targets(self, **kwargs):
            Throttled.calls += 1
            if Throttled.calls == 1:
                from botocore.exceptions import ClientError
                raise ClientError({"Error": {"Code": "Throttling", "Message": "Rate exceeded"}}, "DeregisterTargets")
            return real.deregister_targets(**kwargs)

    clients = act.Clients.of(factory=world.clients.factory, elbv2=Throttled())
    handler = Handler(clients, DynamoDBStore(world.clients.dynamodb, w.TABLE),
                      HandlerSettings(checkpoint_command=CHECKPOINT), sleep=lambda s: None)
    # WHEN the warning is handled, then redelivered
    [first] = handler.handle_body(w.spot_warning(victim))
    [second] = handler.handle_body(w.spot_warning(victim))
    # THEN the first asks for a retry (message kept), the retry claims the event again and acts
    assert first.status == "retry"
    assert first.delete_message is False
    assert first.reason.startswith(f"deregister-targets for {victim}")
    assert "An error occurred (Throttling)" in first.reason
    assert second.status == "acted"
    assert victim not in _targets(world)
    assert DynamoDBStore(world.clients.dynamodb, w.TABLE).get(second.event_id)["attempts"] == 2


def test_local_file_journal_dedupes_across_instances(world, tmp_path):
    # GIVEN two handlers (two processes' worth of stores) sharing one JSON-lines journal
    path = tmp_path / "journal.jsonl"
    one = _handler(world, store=LocalFileStore(path))
    two = _handler(world, store=LocalFileStore(path))
    # WHEN both get the same warning
    [a] = one.handle_body(w.spot_warning(world.managed[0]))
    [b] = two.handle_body(w.spot_warning(world.managed[0]))
    # THEN one acted, and the file records the claim, the actions and the finish
    assert (a.status, b.status) == ("acted", "duplicate")
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(r["type"], r.get("name", r.get("status", ""))) for r in rows] == [
        ("claim", ""), ("action", "deregister-targets"), ("action", "ecs-drain"), ("action", "checkpoint"),
        ("finish", "done")]


def test_drain_public_api_is_idempotent(world):
    # GIVEN the composite the recovery runbook reuses, with a batch of one
    victim = world.managed[0]
    batch = [act.DrainRequest(victim, "e1")]
    # WHEN it runs twice
    first = act.drain(world.clients, batch, dry_run=False, checkpoint_command=CHECKPOINT)
    second = act.drain(world.clients, batch, dry_run=False, checkpoint_command=CHECKPOINT)
    # THEN the first changed things and the second found them done
    assert [(a.name, a.status) for a in first[victim].values()] == [
        ("deregister-targets", "done"), ("ecs-drain", "done"), ("checkpoint", "done")]
    assert [(a.name, a.status) for a in second[victim].values()] == [
        ("deregister-targets", "skipped"), ("ecs-drain", "skipped"), ("checkpoint", "skipped")]
    assert act.is_drained(world.clients, victim, list(first[victim].values()), dry_run=False) is True
