"""What the handler may touch, decided in one place for the single-event and the batch path (issues 25, 30):
events claiming another account or region are dropped with the reason (journaled), even for an instance of
ours; and the lifecycle deadline comes from the group's hook (its heartbeat timeout, read once per hook),
not an assumed 300 s (issue 26). Against the moto server."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from tests.support import interruption_world as w
from spotkit.runtime.interruption import actions as act
from spotkit.runtime.interruption import events as ev
from spotkit.runtime.interruption.handler import Handler, HandlerSettings
from spotkit.runtime.interruption.scope import Scope
from spotkit.runtime.interruption.store import DynamoDBStore
from spotkit.runtime.notice import parse_time

CHECKPOINT = "/opt/spotkit/hooks/checkpoint"


@pytest.fixture()
def world(aws):
    return w.build_world(aws, managed=2, unmanaged=1)


def _handler(world, clients=None, **settings) -> Handler:
    return Handler(clients or world.clients, DynamoDBStore(world.clients.dynamodb, w.TABLE),
                   HandlerSettings(checkpoint_command=CHECKPOINT, drain_poll_seconds=0.01, **settings),
                   sleep=lambda s: None)


def _targets(world) -> set[str]:
    health = world.clients.elbv2.describe_target_health(TargetGroupArn=world.target_group_arn)
    return {h["Target"]["Id"] for h in health["TargetHealthDescriptions"]}


@pytest.mark.parametrize("field, value, reason", [
    ("account", "999999999999", "the event is from account 999999999999, not this handler's account 123456789012: "
                                "dropped (an event from another account is never acted on here)"),
    ("region", "eu-west-1", "the event is from region eu-west-1, not this handler's region us-east-1: dropped "
                            "(each region has its own handler)"),
])
@pytest.mark.parametrize("path", ["single", "batch"])
def test_an_event_claiming_another_account_or_region_is_dropped(world, field, value, reason, path):
    # GIVEN a spot warning for one of our managed instances that claims another account (or region)
    victim, other = world.managed
    forged = w.spot_warning(victim)
    forged[field] = value
    handler = _handler(world)
    # WHEN handled alone, or in a batch with a genuine warning for the other instance
    if path == "single":
        [out] = handler.handle_body(json.dumps(forged))
    else:
        [[out], [genuine]] = handler.handle_batch([json.dumps(forged), json.dumps(w.spot_warning(other))])
        assert genuine.status == "acted"
    # THEN it is dropped with the reason, journaled so, and the instance is left registered and unchecked
    assert (out.status, out.reason) == ("dropped", reason)
    assert DynamoDBStore(world.clients.dynamodb, w.TABLE).get(out.event_id)["status"] == "dropped"
    assert victim in _targets(world)
    assert world.clients.ssm.list_commands(InstanceId=victim)["Commands"] == []


def test_the_scope_decision_is_one_function_for_every_kind():
    # GIVEN a scope for one account, region and group
    scope = Scope(account="111122223333", region="us-east-1", groups=("train",))
    managed = {"Tags": [{"Key": "spotkit:group", "Value": "train"}, {"Key": "spotkit:managed", "Value": "true"}]}
    # THEN instances and groups are judged by the same rules, in the same order
    assert scope.instance("i-1", managed, account="111122223333", region="us-east-1").act
    assert scope.group("train", managed).act
    assert scope.instance("i-1", managed, account="444455556666").status == "dropped"
    assert scope.group("train", managed, region="eu-west-1").status == "dropped"
    assert scope.group("train", {"Tags": []}).reason == ("Auto Scaling group 'train' is not managed by spotkit "
                                                          "(no spotkit:managed=true or spotkit:group tag)")
    other = {"Tags": [{"Key": "spotkit:group", "Value": "infer"}]}
    assert scope.instance("i-1", other).reason == "instance i-1 is in group 'infer', not one of train"
    assert scope.groups_of([{"AutoScalingGroupName": "train", **managed}, {"AutoScalingGroupName": "x", "Tags": []},
                            {"AutoScalingGroupName": "infer", **other}]) == ["train"]


class CountingAutoscaling:
    def __init__(self, real):
        self.real = real
        self.hook_reads = 0

    def __getattr__(self, name):
        return getattr(self.real, name)

    def describe_lifecycle_hooks(self, **kwargs):
        self.hook_reads += 1
        return self.real.describe_lifecycle_hooks(**kwargs)


def test_the_lifecycle_deadline_is_the_hooks_heartbeat_read_once(world):
    # GIVEN the group's drain hook with AWS's default heartbeat timeout (3600 s), not the 300 s once assumed
    world.clients.autoscaling.put_lifecycle_hook(AutoScalingGroupName=w.GROUP, LifecycleHookName=w.HOOK,
                                                 LifecycleTransition="autoscaling:EC2_INSTANCE_TERMINATING",
                                                 HeartbeatTimeout=3600, DefaultResult="CONTINUE")
    counting = CountingAutoscaling(world.clients.autoscaling)
    clients = act.Clients.of(factory=world.clients.factory, autoscaling=counting)
    handler = _handler(world, clients)
    # WHEN two lifecycle actions of that hook are prepared
    first, = ev.from_message_body(json.dumps(w.lifecycle_terminate(world.managed[0])))
    second, = ev.from_message_body(json.dumps(w.lifecycle_terminate(world.managed[1])))
    # THEN each deadline is its notice time plus 3600 s, and the hook was read once
    for event in (first, second):
        timed = handler.with_hook_deadline(event)
        assert parse_time(timed.deadline) - parse_time(timed.issued_at) == timedelta(seconds=3600)
    assert counting.hook_reads == 1


def test_a_lifecycle_action_gets_the_checkpoint_time_its_hook_allows(world):
    # GIVEN a hook whose heartbeat is 1800 s
    world.clients.autoscaling.put_lifecycle_hook(AutoScalingGroupName=w.GROUP, LifecycleHookName=w.HOOK,
                                                 LifecycleTransition="autoscaling:EC2_INSTANCE_TERMINATING",
                                                 HeartbeatTimeout=1800, DefaultResult="CONTINUE")
    victim = world.managed[0]
    # WHEN its lifecycle action is handled
    [out] = _handler(world).handle_body(json.dumps(w.lifecycle_terminate(victim)))
    # THEN the checkpoint was given the hook's time (about 1800 s, not about 300 s)
    assert out.status == "acted", out.reason
    [command] = world.clients.ssm.list_commands(InstanceId=victim)["Commands"]
    assert 1700 <= command["TimeoutSeconds"] <= 1800
