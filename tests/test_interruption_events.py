"""Normalizing every warning AWS sends into one InterruptionEvent with a deterministic id (pure parsing,
no AWS), and the local JSON-lines journal's claim rules."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from tests.support import interruption_world as w
from spotkit.runtime import notice
from spotkit.runtime.agent.notices import SPOT_PATH, Notice, RebalanceMonitor, SpotMonitor
from spotkit.runtime.interruption import events as ev
from spotkit.runtime.interruption.events import DropEvent
from spotkit.runtime.interruption.store import DUPLICATE, FAILED, IN_PROGRESS, NEW, LocalFileStore

I = "i-0abc123def4567890"
NOW = datetime(2026, 11, 23, 10, 0, tzinfo=timezone.utc)


def imds_spot(body: dict) -> Notice:
    """The agent's reading (toolkit/runtime/agent/notices.py) of an IMDS spot instance-action body, on instance I."""
    [read] = SpotMonitor().parse(json.dumps(body), NOW)
    return read.for_instance(I)


def imds_rebalance(body: dict, boot: str = "") -> Notice:
    [read] = RebalanceMonitor(boot).parse(json.dumps(body), NOW)
    return read.for_instance(I)


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


def _spot_at(sent_at: str, action: str = "terminate", instance: str = I) -> dict:
    sample = w.spot_warning(instance, action)
    sample["time"] = sent_at
    return sample


def test_same_warning_from_eventbridge_and_imds_has_the_same_id():
    # GIVEN the EventBridge warning (sent at 10:00:03) and the IMDS instance-action for the same notice
    # (the instance goes at 10:02:05: IMDS and EventBridge agree to within seconds, not exactly)
    [from_eb] = ev.from_eventbridge(_spot_at("2026-11-23T10:00:03Z"))
    from_imds = imds_spot({"action": "terminate", "time": "2026-11-23T10:02:05Z"})
    # THEN they are one event, with the id toolkit/runtime/notice.py defines
    assert from_eb.event_id == from_imds.id == notice.notice_id(
        notice.SPOT_INTERRUPTION, I, notice.spot_key("terminate", notice.parse_time("2026-11-23T10:02:03Z")))
    assert from_imds.source == SPOT_PATH
    # AND a stop is a different event from a terminate
    assert imds_spot({"action": "stop", "time": "2026-11-23T10:02:05Z"}).id != from_eb.event_id


def test_a_persistent_instance_interrupted_twice_is_two_notices():
    # GIVEN a persistent spot instance stopped at 10:02, restarted, and stopped again 3 h later
    first = ev.from_eventbridge(_spot_at("2026-11-23T10:00:00Z", "stop"))[0]
    second = ev.from_eventbridge(_spot_at("2026-11-23T13:00:00Z", "stop"))[0]
    # THEN the two are different notices, from EventBridge and from IMDS alike
    assert first.event_id != second.event_id
    imds = [imds_spot({"action": "stop", "time": t}).id
            for t in ("2026-11-23T10:02:00Z", "2026-11-23T13:02:00Z")]
    assert imds == [first.event_id, second.event_id]
    # AND a redelivery of the first warning (same envelope) is the same notice
    assert ev.from_eventbridge(_spot_at("2026-11-23T10:00:00Z", "stop"))[0].event_id == first.event_id


def test_capacity_reservation_interruptions_are_keyed_by_their_window():
    sample = w.capacity_reservation_warning(I)
    sample["detail"]["instance-termination-time"] = "2026-11-23T10:02:00Z"
    later = json.loads(json.dumps(sample))
    later["detail"]["instance-termination-time"] = "2026-11-23T13:02:00Z"
    a, b = ev.from_eventbridge(sample)[0], ev.from_eventbridge(later)[0]
    assert a.event_id == notice.notice_id(notice.CAPACITY_RESERVATION_INTERRUPTION, I,
                                          notice.spot_key("terminate", notice.parse_time("2026-11-23T10:02:00Z")))
    assert a.event_id != b.event_id


def test_rebalance_is_one_per_instance_whatever_its_notice_time():
    # GIVEN an IMDS whose rebalance noticeTime moves with every request (AWS's metadata mock does this)
    ids = {imds_rebalance({"noticeTime": t}).id
           for t in ("2026-11-23T10:00:00Z", "2026-11-23T10:00:07Z", "2026-11-23T11:30:00Z")}
    # THEN it is one notice, the one EventBridge's recommendation for the instance also is
    assert ids == {ev.from_eventbridge(w.rebalance(I))[0].event_id}
    assert ids == {notice.notice_id(notice.REBALANCE_RECOMMENDATION, I, notice.rebalance_key())}
    # AND a reader that knows the boot tells two boots apart
    assert imds_rebalance({"noticeTime": "x"}, boot="b1").id != imds_rebalance({"noticeTime": "x"}, boot="b2").id


def test_every_aws_time_format_reads_the_same():
    # the handler reads times with toolkit/runtime/notice.py: Z, +00:00, +0000, 9 fractional digits, naive = UTC
    ids = {ev.from_eventbridge(_spot_at(t))[0].event_id
           for t in ("2026-11-23T10:00:00Z", "2026-11-23T10:00:00+00:00", "2026-11-23T10:00:00+0000",
                     "2026-11-23T10:00:00.123456789Z", "2026-11-23T10:00:00", "2026-11-23T11:00:00+01:00")}
    assert len(ids) == 1
    with pytest.raises(DropEvent) as err:
        ev.from_eventbridge({**w.spot_warning(I), "time": 12345})
    assert str(err.value) == "EC2 Spot Instance Interruption Warning: 'time' is a JSON number, not a string"


@pytest.mark.parametrize("sample", [w.spot_warning(I), w.rebalance(I), w.state_change(I, "stopping"),
                                    w.health_scheduled([I]), w.lifecycle_terminate(I), w.capacity_reservation_warning(I)],
                         ids=lambda s: s["detail-type"])
def test_an_applications_event_with_an_aws_detail_type_is_dropped(sample):
    # GIVEN the same detail type and detail, put on the bus by an application (source "my.app")
    forged = {**sample, "source": "my.app"}
    # WHEN parsed THEN it is dropped, and the reason names both sources
    with pytest.raises(DropEvent) as err:
        ev.from_message_body(json.dumps(forged))
    assert str(err.value) == (f"{sample['detail-type']}: source 'my.app' is not {sample['source']!r}; only AWS "
                              "sends this warning, so this is another application's event")
    # AND the real one is accepted
    assert ev.from_message_body(json.dumps(sample))


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
    (json.dumps(w.envelope("EC2 AMI State Change", "my.app", {})),
     "detail-type 'EC2 AMI State Change' is not an interruption warning spotkit handles"),
    (json.dumps(w.envelope("EC2 Spot Instance Interruption Warning", "aws.ec2", {"instance-action": "terminate"})),
     "EC2 Spot Instance Interruption Warning: detail has no 'instance-id'"),
])
def test_bodies_that_can_never_be_handled_are_drops(body, message):
    with pytest.raises(DropEvent) as err:
        ev.from_message_body(body)
    assert not isinstance(err.value, ev.IgnoreEvent)
    assert str(err.value) == message


@pytest.mark.parametrize("body, message", [
    (json.dumps({"Event": "autoscaling:TEST_NOTIFICATION"}),
     "Auto Scaling notification: autoscaling:TEST_NOTIFICATION (sent when a notification target is set up): "
     "nothing to do"),
    (json.dumps(w.envelope("EC2 AMI State Change", "aws.ec2", {})),
     "EC2 AMI State Change from aws.ec2 is not an interruption warning: nothing to do"),
    (json.dumps(w.state_change(I, "running")),
     "EC2 Instance State-change Notification: state 'running' is not a departure (stopping, shutting-down, stopped, "
     "terminated): nothing to do"),
])
def test_valid_events_that_need_no_action_are_ignored_not_dropped(body, message):
    # GIVEN valid AWS events that ask for nothing WHEN parsed THEN they are ignored (a drop's subclass: deleted
    # like one) with the reason, and never counted as unreadable
    with pytest.raises(ev.IgnoreEvent) as err:
        ev.from_message_body(body)
    assert str(err.value) == message
