"""One event type for every interruption warning AWS sends, with a deterministic id.

Monitors (EventBridge rules into SQS, Auto Scaling notifications) all produce ``InterruptionEvent``
(the instance metadata, IMDS, is read by the on-instance agent: ``toolkit/runtime/agent/notices.py`` parses it).
Its ``event_id`` is ``spotkit.runtime.notice.notice_id``: a hash of what the warning *means* (kind, instance,
and the key that tells two real warnings apart), not of how it was delivered, so the same spot notice
seen twice through SQS, or once by EventBridge and once by IMDS, gets the same id and the store acts on
it once; a persistent instance interrupted again hours later is a new notice
(see ``toolkit/runtime/notice.py`` for the keys).

Parsers raise ``DropEvent`` for input that can never be handled (malformed, a field of the wrong JSON
type, an event whose ``source`` is not the AWS service that sends its detail type); the handler journals
such a message with its reason and deletes it instead of retrying it forever. ``IgnoreEvent`` (a
``DropEvent``) is a valid AWS event that needs nothing (an Auto Scaling test notification, a launch
lifecycle action, an instance entering ``pending``): deleted too, reported as ``ignored``, not as bad input.
Every field is read with its JSON type checked (``_text``, ``_items``, ``_require``), so no message's
shape can raise a ``TypeError`` that would fail its batch-mates.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Mapping, Optional, Sequence

from spotkit.runtime import notice
from spotkit.runtime.notice import (  # noqa: F401  (re-exported: the handler, runbooks and tests use ev.<KIND>)
    CAPACITY_KINDS, CAPACITY_RESERVATION_INTERRUPTION, DEFAULT_LIFECYCLE_SECONDS, FALLBACK_CHECK, KINDS,
    LAUNCH_FAILURE, LIFECYCLE_TERMINATE, PLACEMENT_FAILURE, REBALANCE_RECOMMENDATION, SCHEDULED_CHANGE,
    SPOT_INTERRUPTION, SPOT_NOTICE_SECONDS, STATE_CHANGE, TERMINATING_TRANSITION, notice_id)


class DropEvent(Exception):
    """The input can never be acted on (malformed, unsupported, not ours): delete it, do not retry."""


class IgnoreEvent(DropEvent):
    """A valid AWS event that needs no action (an Auto Scaling test notification, a launch lifecycle action,
    an instance entering ``pending``): deleted like a drop, but reported as ``ignored``, not as bad input."""


class RetryEvent(Exception):
    """A transient failure (throttling, a dependency not ready): leave the message to be retried."""


# EventBridge detail types, and the source each comes from: the table the parser reads and the stacks'
# EventBridge rules are generated from (``event_pattern``), so a rule matches exactly what is parsed.
DETAIL_TYPES: dict[str, tuple[str, str]] = {
    "EC2 Spot Instance Interruption Warning": ("aws.ec2", SPOT_INTERRUPTION),
    "EC2 Instance Rebalance Recommendation": ("aws.ec2", REBALANCE_RECOMMENDATION),
    "EC2 Instance State-change Notification": ("aws.ec2", STATE_CHANGE),
    "AWS Health Event": ("aws.health", SCHEDULED_CHANGE),
    "EC2 Instance-terminate Lifecycle Action": ("aws.autoscaling", LIFECYCLE_TERMINATE),
    "EC2 Capacity Reservation Instance Interruption Warning": ("aws.ec2", CAPACITY_RESERVATION_INTERRUPTION),
    # Capacity (issue 18): about a group, not an instance (``instance_id`` is empty, ``group_name`` set).
    "EC2 Instance Launch Unsuccessful": ("aws.autoscaling", LAUNCH_FAILURE),
    "ECS Service Action": ("aws.ecs", PLACEMENT_FAILURE),
    "Scheduled Event": ("aws.events", FALLBACK_CHECK),
}
PLACEMENT_FAILURE_EVENT = "SERVICE_TASK_PLACEMENT_FAILURE"
DETAIL_TYPE_OF = {kind: detail_type for detail_type, (_source, kind) in DETAIL_TYPES.items()}
SPOT_WARNING_DETAIL_TYPE = DETAIL_TYPE_OF[SPOT_INTERRUPTION]

# States of the state-change notification that mean the instance is going away.
LEAVING_STATES = ("stopping", "shutting-down", "stopped", "terminated")
# What a kind's rule matches inside ``detail``: the events ``_needs_action`` would not ignore.
PATTERN_DETAIL: dict = {
    STATE_CHANGE: {"state": list(LEAVING_STATES)},
    SCHEDULED_CHANGE: {"service": ["EC2"], "eventTypeCategory": ["scheduledChange"]},
    LIFECYCLE_TERMINATE: {"LifecycleTransition": [TERMINATING_TRANSITION]},
    PLACEMENT_FAILURE: {"eventName": [PLACEMENT_FAILURE_EVENT]},
}


def event_pattern(kind: str, **detail: list) -> dict:
    """The EventBridge pattern of the events ``from_eventbridge`` parses as ``kind``: its source, its detail
    type, the ``detail`` fields it acts on (``PATTERN_DETAIL``) and any more given here (``detail``: field
    -> allowed values, e.g. ``AutoScalingGroupName=[...]``)."""
    detail_type = DETAIL_TYPE_OF[kind]
    pattern: dict = {"source": [DETAIL_TYPES[detail_type][0]], "detail-type": [detail_type]}
    matched = {**detail, **PATTERN_DETAIL.get(kind, {})}
    if matched:
        pattern["detail"] = matched
    return pattern


@dataclass(frozen=True)
class LifecycleAction:
    """What completing an Auto Scaling lifecycle action needs. ``token`` may be None: AWS then
    identifies the action by the instance id (what a drain by hand has)."""

    group_name: str
    hook_name: str
    token: Optional[str] = None


@dataclass(frozen=True)
class InterruptionEvent:
    """A normalized interruption warning.

    - ``event_id``: deterministic (see module doc); the store's de-duplication key.
    - ``kind``: one of ``KINDS``.
    - ``instance_id``: the instance the warning is about.
    - ``source``: where it was seen (``aws.ec2``, ``aws.autoscaling``, ``aws.health``, ``imds``).
    - ``issued_at`` / ``deadline``: when AWS sent it and when the instance goes (or the lifecycle hook
      times out); ISO-8601 UTC.
    - ``action``: the instance action (terminate, stop, hibernate) or the new state for state changes.
    - ``lifecycle``: set for Auto Scaling lifecycle actions.
    - ``group_name``: the Auto Scaling group when the warning names it (lifecycle actions).
    - ``origin_id``: the id the delivery carried (EventBridge event id), for the journal only.
    """

    event_id: str
    kind: str
    instance_id: str
    source: str
    issued_at: str
    deadline: str
    action: str = ""
    lifecycle: Optional[LifecycleAction] = None
    group_name: str = ""
    region: str = ""
    account: str = ""
    origin_id: str = ""
    detail: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def seconds_left(self, now: Optional[datetime] = None) -> float:
        now = now or datetime.now(timezone.utc)
        return (parse_time(self.deadline) - now).total_seconds()


def parse_time(value: Any) -> datetime:
    """``spotkit.runtime.notice.parse_time``; a time it cannot read makes the message a drop."""
    try:
        return notice.parse_time(value)
    except notice.TimeFormatError as exc:
        raise DropEvent(str(exc)) from None


def _iso(dt: datetime) -> str:
    return notice.format_time(dt)


def _require(detail: Mapping, key: str, what: str) -> str:
    value = detail.get(key)
    if value is not None and not isinstance(value, str):
        raise DropEvent(f"{what}: {key!r} is a JSON {_json_type(value)}, not a string")
    if not value:
        raise DropEvent(f"{what}: detail has no {key!r}")
    return value


def _json_type(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number",
            type(None): "null"}.get(type(value), type(value).__name__)


def _text(data: Mapping, key: str, what: str, default: str = "") -> str:
    """An optional string field: absent or null gives ``default``; any other JSON type makes the message
    a drop with the field named (never a ``TypeError`` later, never ``str(list)`` taken as a value)."""
    value = data.get(key)
    if value is None:
        return default
    if not isinstance(value, str):
        raise DropEvent(f"{what}: {key!r} is a JSON {_json_type(value)}, not a string")
    return value


def _items(data: Mapping, key: str, what: str) -> list:
    value = data.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise DropEvent(f"{what}: {key!r} is a JSON {_json_type(value)}, not an array")
    return value


# --- EventBridge --------------------------------------------------------------------------------

def from_eventbridge(envelope: Mapping[str, Any]) -> list[InterruptionEvent]:
    """Parse one EventBridge event (any of the six warnings, or a capacity event: a failed launch, an ECS
    task placement failure, the scheduled fallback check) into events (a Health event can name several
    instances). Raises ``DropEvent`` for anything else, including an event whose ``source`` is not
    the AWS service that sends its detail type (an application may put events with any detail-type on a
    bus; only AWS may use an ``aws.*`` source)."""
    detail_type = _text(envelope, "detail-type", "EventBridge event")
    source = _text(envelope, "source", "EventBridge event")
    if detail_type not in DETAIL_TYPES:
        if source.startswith("aws."):
            raise IgnoreEvent(f"{detail_type or 'an event without detail-type'} from {source} is not an "
                              "interruption warning: nothing to do")
        raise DropEvent(f"detail-type {detail_type!r} is not an interruption warning spotkit handles")
    expected_source, kind = DETAIL_TYPES[detail_type]
    if source != expected_source:
        raise DropEvent(f"{detail_type}: source {source!r} is not {expected_source!r}; only AWS sends this "
                        "warning, so this is another application's event")
    detail = envelope.get("detail")
    if not isinstance(detail, Mapping):
        raise DropEvent(f"{detail_type}: event has no detail object")
    _needs_action(kind, detail, detail_type)
    for key in ("region", "account", "id"):
        _text(envelope, key, detail_type)
    resources = _items(envelope, "resources", detail_type)
    issued = parse_time(_text(envelope, "time", detail_type) or datetime.now(timezone.utc))
    common = {"source": source, "region": _text(envelope, "region", detail_type),
              "account": _text(envelope, "account", detail_type), "origin_id": _text(envelope, "id", detail_type),
              "issued_at": _iso(issued)}

    if kind in CAPACITY_KINDS:
        return [_capacity_event(kind, envelope, detail, common, issued, detail_type, resources)]
    if kind == LIFECYCLE_TERMINATE:
        return [_lifecycle_event(detail, common, issued, detail_type)]
    return _instance_events(kind, detail, common, issued, detail_type)


def _instance_events(kind: str, detail: Mapping, common: dict, issued: datetime,
                     detail_type: str) -> list[InterruptionEvent]:
    """The events of a warning about instances: spot and capacity-reservation interruptions, rebalance
    recommendations, state changes, EC2 scheduled changes (a Health event may name several instances)."""
    if kind == SPOT_INTERRUPTION:
        instance = _require(detail, "instance-id", detail_type)
        action = _text(detail, "instance-action", detail_type, "terminate")
        deadline = notice.spot_deadline_from_warning(issued)
        return [InterruptionEvent(
            event_id=notice_id(kind, instance, notice.spot_key(action, deadline)), kind=kind, instance_id=instance,
            action=action, deadline=_iso(deadline), detail=dict(detail), **common)]

    if kind == CAPACITY_RESERVATION_INTERRUPTION:
        instance = _require(detail, "instance-id", detail_type)
        action = _text(detail, "instance-action", detail_type, "terminate")
        deadline = _text(detail, "instance-termination-time", detail_type)
        deadline_dt = parse_time(deadline) if deadline else notice.spot_deadline_from_warning(issued)
        return [InterruptionEvent(
            event_id=notice_id(kind, instance, notice.spot_key(action, deadline_dt)), kind=kind,
            instance_id=instance, action=action, deadline=_iso(deadline_dt), detail=dict(detail), **common)]

    if kind == REBALANCE_RECOMMENDATION:
        instance = _require(detail, "instance-id", detail_type)
        # One per instance (EventBridge does not say which boot); the spot notice (if any) follows.
        return [InterruptionEvent(
            event_id=notice_id(kind, instance, notice.rebalance_key()), kind=kind, instance_id=instance,
            deadline=_iso(notice.spot_deadline_from_warning(issued)), detail=dict(detail), **common)]

    if kind == STATE_CHANGE:
        instance = _require(detail, "instance-id", detail_type)
        state = _require(detail, "state", detail_type)
        # The state and the window of when it happened: a second stop of the same instance later is new.
        return [InterruptionEvent(
            event_id=notice_id(kind, instance, notice.spot_key(state, issued)), kind=kind, instance_id=instance,
            action=state, deadline=_iso(issued), detail=dict(detail), **common)]

    # SCHEDULED_CHANGE (an AWS Health event)
    arn = _require(detail, "eventArn", detail_type)
    start = _text(detail, "startTime", detail_type)
    deadline = _iso(parse_time(start)) if start else _iso(issued)
    instances = [_text(e, "entityValue", detail_type) for e in _items(detail, "affectedEntities", detail_type)
                 if isinstance(e, Mapping)]
    instances = [i for i in instances if i.startswith("i-")]
    if not instances:
        raise DropEvent(f"{detail_type}: {arn} names no EC2 instance")
    slim = {k: detail[k] for k in ("eventArn", "eventTypeCode", "startTime", "endTime") if k in detail}
    return [InterruptionEvent(
        event_id=notice_id(kind, i, arn), kind=kind, instance_id=i, action=str(detail.get("eventTypeCode", "")),
        deadline=deadline, detail=slim, **common) for i in instances]


def _needs_action(kind: str, detail: Mapping, what: str) -> None:
    """Raise ``IgnoreEvent`` for a well-formed warning that needs nothing done; decided before the
    event's time is read (AWS's own samples of such events carry placeholder times)."""
    if kind == STATE_CHANGE:
        state = _require(detail, "state", what)
        if state not in LEAVING_STATES:
            raise IgnoreEvent(f"{what}: state {state!r} is not a departure ({', '.join(LEAVING_STATES)}): "
                              "nothing to do")
    elif kind == SCHEDULED_CHANGE:
        service = _text(detail, "service", what)
        category = _text(detail, "eventTypeCategory", what)
        if service != "EC2" or category != "scheduledChange":
            raise IgnoreEvent(f"{what}: only EC2 scheduled changes need action (got service {service!r}, "
                              f"category {category!r})")
    elif kind == PLACEMENT_FAILURE:
        name = _text(detail, "eventName", what)
        if name != PLACEMENT_FAILURE_EVENT:
            raise IgnoreEvent(f"{what}: eventName {name!r} is not {PLACEMENT_FAILURE_EVENT}: nothing to do")
    elif kind == LIFECYCLE_TERMINATE:
        _lifecycle_transition(detail, what)


def _lifecycle_transition(data: Mapping, what: str) -> None:
    transition = _text(data, "LifecycleTransition", what)
    if transition in ("autoscaling:EC2_INSTANCE_LAUNCHING", "autoscaling:TEST_NOTIFICATION"):
        raise IgnoreEvent(f"{what}: transition {transition} needs no action (spotkit acts on terminations)")
    if transition != TERMINATING_TRANSITION:
        raise DropEvent(f"{what}: transition {transition!r} is not {TERMINATING_TRANSITION}")


def _capacity_event(kind: str, envelope: Mapping, detail: Mapping, common: dict, issued: datetime,
                    what: str, resources: Sequence = ()) -> InterruptionEvent:
    """A group-level event: a failed launch, an ECS task that found no room, or the scheduled check."""
    if kind == LAUNCH_FAILURE:
        group = _require(detail, "AutoScalingGroupName", what)
        key = _text(detail, "ActivityId", what) or common["origin_id"]
        slim = {k: detail[k] for k in ("ActivityId", "StatusCode", "StatusMessage", "Cause", "Description", "Details")
                if k in detail}
        return InterruptionEvent(event_id=notice_id(kind, group, key), kind=kind, instance_id="", group_name=group,
                                 action="launch", deadline=_iso(issued), detail=slim, **common)
    if kind == PLACEMENT_FAILURE:
        cluster = _require(detail, "clusterArn", what)
        # One per cluster and reason in the notice window: ECS repeats it while the task keeps failing.
        key = f"{_text(detail, 'reason', what)}|{notice.notice_window(issued)}"
        slim = {k: detail[k] for k in ("clusterArn", "reason", "capacityProviderArns", "eventName") if k in detail}
        return InterruptionEvent(event_id=notice_id(kind, cluster.rsplit("/", 1)[-1], key), kind=kind,
                                 instance_id="", action="place", deadline=_iso(issued), detail=slim, **common)
    # FALLBACK_CHECK: one per scheduled invocation (the time of the schedule tick is the key).
    rule = next((r for r in resources if isinstance(r, str)), "")
    return InterruptionEvent(event_id=notice_id(kind, rule.rsplit("/", 1)[-1], _iso(issued)), kind=kind,
                             instance_id="", action="check", deadline=_iso(issued), detail={"rule": rule}, **common)


def _lifecycle_event(detail: Mapping, common: dict, issued: datetime, what: str,
                     heartbeat_seconds: int = DEFAULT_LIFECYCLE_SECONDS) -> InterruptionEvent:
    _lifecycle_transition(detail, what)
    instance = _require(detail, "EC2InstanceId", what)
    token = _require(detail, "LifecycleActionToken", what)
    lifecycle = LifecycleAction(group_name=_require(detail, "AutoScalingGroupName", what),
                                hook_name=_require(detail, "LifecycleHookName", what), token=token)
    return InterruptionEvent(
        event_id=notice_id(LIFECYCLE_TERMINATE, instance, token), kind=LIFECYCLE_TERMINATE, instance_id=instance,
        action="terminate", lifecycle=lifecycle, group_name=lifecycle.group_name,
        deadline=_iso(issued + timedelta(seconds=heartbeat_seconds)),
        detail={k: detail[k] for k in ("NotificationMetadata", "Origin", "Destination") if k in detail},
        **common)


# --- Auto Scaling notifications sent straight to SQS (not through EventBridge) -----------------

def from_autoscaling_notification(body: Mapping[str, Any]) -> list[InterruptionEvent]:
    what = "Auto Scaling notification"
    if _text(body, "Event", what) == "autoscaling:TEST_NOTIFICATION":
        raise IgnoreEvent(f"{what}: autoscaling:TEST_NOTIFICATION (sent when a notification target is set up): "
                          "nothing to do")
    if "LifecycleTransition" not in body:
        raise IgnoreEvent(f"{what}: {_text(body, 'Event', what) or 'an event'} is not a lifecycle action: nothing to do")
    _lifecycle_transition(body, what)
    issued = parse_time(_text(body, "Time", what) or datetime.now(timezone.utc))
    arn = _text(body, "AutoScalingGroupARN", what)
    region = arn.split(":")[3] if arn.count(":") >= 4 else ""
    common = {"source": "aws.autoscaling", "region": region, "account": _text(body, "AccountId", what),
              "origin_id": _text(body, "RequestId", what), "issued_at": _iso(issued)}
    return [_lifecycle_event(body, common, issued, "Auto Scaling lifecycle notification")]


# --- SQS message bodies -------------------------------------------------------------------------

def from_message_body(body: str | Mapping[str, Any]) -> list[InterruptionEvent]:
    """An SQS body: an EventBridge event, an SNS envelope around one, an Auto Scaling notification,
    or a normalized event (``{"event_id": ..., "kind": ...}``, what the agent forwards).

    Every field is read with its JSON type checked, so a wrong type is a ``DropEvent`` naming the field;
    as a last guard, a ``TypeError``/``ValueError``/... the checks missed is turned into a drop with its
    reason too: one message's shape never fails its batch-mates."""
    try:
        return _from_message_body(body)
    except DropEvent:
        raise
    except (TypeError, ValueError, AttributeError, KeyError, IndexError, RecursionError) as exc:
        raise DropEvent(f"message cannot be read ({type(exc).__name__}: {exc})") from None


def _from_message_body(body: str | Mapping[str, Any]) -> list[InterruptionEvent]:
    if isinstance(body, bytes):
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DropEvent(f"message body is not UTF-8 text (byte {exc.start})") from None
    if isinstance(body, str):
        try:
            data = json.loads(body)
        except json.JSONDecodeError as exc:
            raise DropEvent(f"message body is not JSON: {exc}") from None
    elif isinstance(body, Mapping):
        data = dict(body)
    else:
        raise DropEvent(f"message body is a {type(body).__name__}, not JSON text")
    if not isinstance(data, dict):
        raise DropEvent(f"message body is a JSON {type(data).__name__}, not an object")
    if data.get("Type") == "Notification" and "Message" in data:
        message = data["Message"]
        if not isinstance(message, (str, Mapping)):
            raise DropEvent(f"SNS notification: 'Message' is a JSON {_json_type(message)}, not a string")
        return _from_message_body(message)
    if "detail-type" in data:
        return from_eventbridge(data)
    if "LifecycleTransition" in data or "Event" in data and str(data.get("Event")).startswith("autoscaling:"):
        return from_autoscaling_notification(data)
    if "event_id" in data and "kind" in data:
        return [from_dict(data)]
    raise DropEvent("message body is neither an EventBridge event, an Auto Scaling notification nor a spotkit event")


def from_dict(data: Mapping[str, Any]) -> InterruptionEvent:
    """Rebuild an event from ``to_dict()`` (the journal, the agent's forwarded events)."""
    what = "spotkit event"
    kind = _text(data, "kind", what)
    if kind not in KINDS:
        raise DropEvent(f"spotkit event kind {kind!r} is not one of {', '.join(KINDS)}")
    if kind in CAPACITY_KINDS:  # they change a group's split: only AWS (through EventBridge) sends them
        raise DropEvent(f"spotkit event kind {data.get('kind')!r} comes only from AWS through EventBridge, not as a "
                        "forwarded spotkit event")
    fields = {k: data[k] for k in InterruptionEvent.__dataclass_fields__ if k in data}
    for key in fields.keys() - {"lifecycle", "detail"}:
        _text(fields, key, what)
    for key in ("issued_at", "deadline"):
        if key in fields:
            parse_time(fields[key])
    if fields.get("detail") is not None and not isinstance(fields["detail"], Mapping):
        raise DropEvent(f"{what}: 'detail' is a JSON {_json_type(fields['detail'])}, not an object")
    lifecycle = fields.get("lifecycle")
    if isinstance(lifecycle, Mapping):
        for key in ("group_name", "hook_name", "token"):
            _text(lifecycle, key, f"{what} lifecycle")
        fields["lifecycle"] = LifecycleAction(**{k: lifecycle[k] for k in ("group_name", "hook_name", "token")
                                                 if k in lifecycle})
    elif lifecycle is not None:
        raise DropEvent(f"{what}: 'lifecycle' is a JSON {_json_type(lifecycle)}, not an object")
    try:
        return InterruptionEvent(**fields)
    except TypeError as exc:
        raise DropEvent(f"spotkit event is incomplete: {exc}") from None
