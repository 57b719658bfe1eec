"""Normalizing every warning AWS sends into one InterruptionEvent with a deterministic id (pure parsing,
no AWS), and the local JSON-lines journal's claim rules."""

from __future__ import annotations

import json

import pytest

from tests.support import interruption_world as w
from toolkit.interruption import events as ev
from toolkit.interruption.events import DropEvent
from toolkit.interruption.store import DUPLICATE, FAILED, IN_PROGRESS, NEW, LocalFileStore

I = "i-0abc123def4567890"


def test_each_detail_type_becomes_its_kind():
    # GIVEN one event of each of the six detail types
    samples = {
        ev.SPOT_INTERRUPTION: w.spot_warning(I),
        ev.REBALANCE_RECOMMENDATION: w.rebalance(I),
        ev.STATE_CHANGE: w.state_change(I, "stopping"),
        ev.SCHEDULED_CHANGE: w.health_scheduled([I]),
        ev.LIFECYCLE_TERMINATE: w.lifecycle_terminate(I, token="11111111-2222-3333-4444-555555555555"),
        ev.CAPACITY_RESERVATION_INTERRUPTION: w.capacity_reservation_warning(I),
    }
    for kind, sample in samples.items():
        # WHEN parsed
        [event] = ev.from_eventbridge(sample)
        # THEN the kind and instance are right and the id names both
        assert (event.kind, event.instance_id) == (kind, I)
        assert event.event_id.startswith(f"{kind}:{I}:")
        assert event.origin_id == sample["id"]


def test_spot_warning_deadline_is_two_minutes_after_the_notice():
    sample = w.spot_warning(I)
    sample["time"] = "2026-11-23T10:00:00Z"
    [event] = ev.from_eventbridge(sample)
    assert (event.issued_at, event.deadline, event.action) == ("2026-11-23T10:00:00Z", "2026-11-23T10:02:00Z", "terminate")


def test_same_warning_from_eventbridge_and_imds_has_the_same_id():
    # GIVEN the EventBridge warning and the IMDS instance-action for the same instance
    [from_eb] = ev.from_eventbridge(w.spot_warning(I))
    from_imds = ev.from_imds_instance_action(I, json.dumps({"action": "terminate", "time": "2026-11-23T10:02:00Z"}))
    # THEN they are one event
    assert from_eb.event_id == from_imds.event_id
    assert from_imds.source == "imds"
    # AND a stop is a different event from a terminate
    assert ev.from_imds_instance_action(I, {"action": "stop", "time": "2026-11-23T10:02:00Z"}).event_id != from_eb.event_id


def test_lifecycle_actions_differ_by_token_and_carry_what_completion_needs():
    a = ev.from_eventbridge(w.lifecycle_terminate(I, token="11111111-2222-3333-4444-555555555555"))[0]
    b = ev.from_eventbridge(w.lifecycle_terminate(I, token="11111111-2222-3333-4444-666666666666"))[0]
    assert a.event_id != b.event_id
    assert a.lifecycle == ev.LifecycleAction(group_name=w.GROUP, hook_name=w.HOOK,
                                             token="11111111-2222-3333-4444-555555555555")


def test_health_event_names_every_instance():
    events = ev.from_eventbridge(w.health_scheduled([I, "i-0fff"]))
    assert [e.instance_id for e in events] == [I, "i-0fff"]
    assert {e.deadline for e in events} == {"2027-06-05T07:00:00Z"}


def test_sqs_bodies_sns_envelopes_and_asg_notifications():
    inner = w.spot_warning(I)
    via_sns = {"Type": "Notification", "Message": json.dumps(inner)}
    assert ev.from_message_body(json.dumps(via_sns))[0].event_id == ev.from_eventbridge(inner)[0].event_id
    notification = {"LifecycleHookName": w.HOOK, "AccountId": w.ACCOUNT, "RequestId": "r1",
                     "LifecycleTransition": "autoscaling:EC2_INSTANCE_TERMINATING", "AutoScalingGroupName": w.GROUP,
                     "Service": "AWS Auto Scaling", "Time": "2026-11-23T10:00:00.000Z", "EC2InstanceId": I,
                     "LifecycleActionToken": "11111111-2222-3333-4444-555555555555"}
    [event] = ev.from_message_body(json.dumps(notification))
    assert (event.kind, event.deadline) == (ev.LIFECYCLE_TERMINATE, "2026-11-23T10:05:00Z")
    # a normalized event round-trips
    assert ev.from_message_body(json.dumps(event.to_dict())) == [event]


@pytest.mark.parametrize("body, message", [
    ("[1, 2]", "message body is a JSON list, not an object"),
    ('{"hello": 1}', "message body is neither an EventBridge event, an Auto Scaling notification nor a spotkit event"),
    (json.dumps({"Event": "autoscaling:TEST_NOTIFICATION"}), "Auto Scaling test notification"),
    (json.dumps(w.envelope("EC2 AMI State Change", "aws.ec2", {})),
     "detail-type 'EC2 AMI State Change' is not an interruption warning spotkit handles"),
    (json.dumps(w.state_change(I, "running")),
     "EC2 Instance State-change Notification: state 'running' is not a departure (stopping, shutting-down, stopped, terminated)"),
    (json.dumps(w.envelope("EC2 Spot Instance Interruption Warning", "aws.ec2", {"instance-action": "terminate"})),
     "EC2 Spot Instance Interruption Warning: detail has no 'instance-id'"),
])
def test_bodies_that_can_never_be_handled_are_drops(body, message):
    with pytest.raises(DropEvent) as err:
        ev.from_message_body(body)
    assert str(err.value) == message


def test_local_journal_claim_rules(tmp_path):
    # GIVEN a journal with a controllable clock
    now = [1000.0]
    store = LocalFileStore(tmp_path / "j.jsonl", dedupe_seconds=3600, clock=lambda: now[0])
    [event] = ev.from_eventbridge(w.spot_warning(I))
    # WHEN claimed: new; again while leased: in progress
    assert store.claim(event, lease_seconds=60) == NEW
    assert store.claim(event, lease_seconds=60) == IN_PROGRESS
    # a worker that died: after its lease the event can be claimed again
    now[0] += 61
    assert store.claim(event, lease_seconds=60) == NEW
    # a failure releases the claim at once
    store.finish(event.event_id, FAILED, "throttled")
    assert store.claim(event, lease_seconds=60) == NEW
    # once done it is a duplicate, until the de-duplication window ends
    store.finish(event.event_id, "done")
    assert store.claim(event, lease_seconds=60) == DUPLICATE
    now[0] += 3601
    assert store.claim(event, lease_seconds=60) == NEW
    assert store.get(event.event_id)["attempts"] == 4
