"""Monitors: one per IMDS path, each turning what it reads into the same ``Notice`` type.

Detect, decide, act (aws-node-termination-handler): the monitors only detect; the agent decides what a
notice means (run the checkpoint hook, signal the workload, complete the lifecycle action).

Whatever a path answers, a monitor returns notices or raises ``NoticeParseError``, nothing else. A 200
on the spot or rebalance path *is* a notice, whatever its body: an unreadable time means "now plus the
platform's standard notice" (``spotkit.runtime.notice.SPOT_NOTICE_SECONDS``), pinned at first sight so the
notice keeps one id, and the notice says so in ``detail["unreadable"]``.

Ids come from ``spotkit.runtime.notice``: spot ``notice_id(kind, instance, spot_key(action, time))`` (a second
interruption of a persistent instance hours later is a new notice), rebalance and lifecycle per
instance and boot (a moving ``noticeTime`` is the same recommendation), maintenance by ``EventId``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Optional

from spotkit.runtime.notice import (
    DEFAULT_LIFECYCLE_SECONDS,
    LIFECYCLE_TERMINATE,
    REBOOT_EVENTS,
    REBALANCE_RECOMMENDATION,
    SCHEDULED_CHANGE,
    SPOT_INTERRUPTION,
    SPOT_NOTICE_SECONDS,
    TimeFormatError,
    format_time,
    notice_id,
    parse_time,
    rebalance_key,
    spot_key,
)

# Same words as the event-driven handler (toolkit/runtime/interruption/events.py): one vocabulary for hooks.
SPOT = SPOT_INTERRUPTION
REBALANCE = REBALANCE_RECOMMENDATION
LIFECYCLE = LIFECYCLE_TERMINATE
MAINTENANCE = SCHEDULED_CHANGE
TERMINAL_KINDS = (SPOT, LIFECYCLE, MAINTENANCE)
SPOT_ACTIONS = ("terminate", "stop", "hibernate")

SPOT_PATH = "/latest/meta-data/spot/instance-action"
REBALANCE_PATH = "/latest/meta-data/events/recommendations/rebalance"
LIFECYCLE_PATH = "/latest/meta-data/autoscaling/target-lifecycle-state"
MAINTENANCE_PATH = "/latest/meta-data/events/maintenance/scheduled"
BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"


class NoticeParseError(ValueError):
    """IMDS returned a body this monitor cannot read (the notice is dropped, polling goes on)."""


@dataclass(frozen=True)
class Notice:
    """A normalized interruption notice.

    ``time`` is when the instance goes away (spot action time, lifecycle deadline, maintenance start) or,
    for a rebalance recommendation, when it was issued. ``key`` is what AWS keeps stable for this notice
    (``spotkit.runtime.notice``); with ``instance`` (set by the agent) it makes the deterministic ``id``.
    """

    kind: str
    time: datetime
    action: str
    source: str
    detail: dict = field(default_factory=dict, compare=False)
    key: str = ""
    instance: str = ""

    @property
    def id(self) -> str:
        return notice_id(self.kind, self.instance, self.key)

    @property
    def terminal(self) -> bool:
        return self.kind in TERMINAL_KINDS

    def for_instance(self, instance: str) -> "Notice":
        return replace(self, instance=instance)

    def to_dict(self) -> dict:
        return {"id": self.id, "kind": self.kind, "action": self.action, "time": iso(self.time),
                "source": self.source, **({"detail": self.detail} if self.detail else {})}


def iso(when: datetime) -> str:
    return format_time(when)


def parse_iso(text: Any) -> datetime:
    """``spotkit.runtime.notice.parse_time``, raising NoticeParseError (kept for callers of the old name)."""
    try:
        return parse_time(text)
    except TimeFormatError as exc:
        raise NoticeParseError(str(exc)) from None


def read_boot_id(path: str = BOOT_ID_PATH) -> str:
    """This boot's id (Linux); empty when unreadable (then one id per instance)."""
    try:
        with open(path) as fh:
            return fh.read().strip()
    except OSError:
        return ""


def _json(body: str) -> tuple[Any, Optional[str]]:
    try:
        return json.loads(body), None
    except (ValueError, RecursionError):
        return None, f"body is not JSON: {body[:120]!r}"


class Monitor:
    """Reads one path. ``parse`` gets the 200 body (404 means nothing to report) and the detection time."""

    kind = ""
    path = ""
    context = ""

    def parse(self, body: str, now: datetime) -> list[Notice]:
        raise NotImplementedError

    def clear(self) -> None:
        """The path answered 404: the notice (if any) is gone."""


class _Pinned:
    """The fallback time of a notice whose own time is unreadable, fixed at first sight."""

    def __init__(self) -> None:
        self._at: Optional[datetime] = None

    def get(self, now: datetime, seconds: float) -> datetime:
        if self._at is None:
            self._at = now.replace(microsecond=0) + timedelta(seconds=seconds)
        return self._at

    def clear(self) -> None:
        self._at = None


class SpotMonitor(Monitor):
    """``{"action": "terminate"|"stop"|"hibernate", "time": ...}``; any other 200 body is still a notice."""

    kind, path, context = SPOT, SPOT_PATH, "checking for spot interruption notices"

    def __init__(self) -> None:
        self._pinned = _Pinned()

    def clear(self) -> None:
        self._pinned.clear()

    def parse(self, body: str, now: datetime) -> list[Notice]:
        doc, problem = _json(body)
        if problem is None and not isinstance(doc, dict):
            problem = f"expected {{\"action\", \"time\"}}, got a JSON {type(doc).__name__}"
        doc = doc if isinstance(doc, dict) else {}
        action = doc.get("action")
        if action not in SPOT_ACTIONS:
            problem = problem or f"unknown action {action!r}"
            action = "terminate"  # the worst case: the instance goes away
        try:
            when = parse_time(doc["time"]) if "time" in doc else None
        except TimeFormatError as exc:
            problem, when = problem or str(exc), None
        if when is None:
            problem = problem or "no time in the notice"
            when = self._pinned.get(now, SPOT_NOTICE_SECONDS)
        detail = {"unreadable": f"{problem}; assumed now + {SPOT_NOTICE_SECONDS} s"} if problem else {}
        return [Notice(SPOT, when, action, self.path, detail, key=spot_key(action, when))]


class RebalanceMonitor(Monitor):
    """``{"noticeTime": ...}``: one recommendation per instance and boot, whatever the time says."""

    kind, path, context = REBALANCE, REBALANCE_PATH, "checking for rebalance recommendations"

    def __init__(self, boot: str = "") -> None:
        self.boot = boot
        self._pinned = _Pinned()

    def parse(self, body: str, now: datetime) -> list[Notice]:
        doc, problem = _json(body)
        when = None
        if isinstance(doc, dict) and "noticeTime" in doc:
            try:
                when = parse_time(doc["noticeTime"])
            except TimeFormatError as exc:
                problem = str(exc)
        else:
            problem = problem or f"expected {{\"noticeTime\"}}, got {body[:120]!r}"
        if when is None:
            when = self._pinned.get(now, 0)
        detail = {"unreadable": f"{problem}; assumed issued now"} if problem else {}
        return [Notice(REBALANCE, when, "rebalance", self.path, detail, key=rebalance_key(self.boot))]


class LifecycleMonitor(Monitor):
    """``Terminated`` means the Auto Scaling group is terminating this instance (scale-in, rebalance,
    refresh, or a spot reclaim seen by the group). AWS gives no time here: the notice time is the
    detection time plus the lifecycle hook's heartbeat (``heartbeat_seconds``). One per boot."""

    kind, path, context = LIFECYCLE, LIFECYCLE_PATH, "checking the Auto Scaling target lifecycle state"

    def __init__(self, heartbeat_seconds: float = DEFAULT_LIFECYCLE_SECONDS, boot: str = ""):
        self.heartbeat_seconds = heartbeat_seconds
        self.boot = boot
        self._first_seen: Optional[datetime] = None

    def parse(self, body: str, now: datetime) -> list[Notice]:
        if body.strip() != "Terminated":
            self._first_seen = None
            return []
        if self._first_seen is None:  # keep the time stable across polls
            self._first_seen = now.replace(microsecond=0)
        return [Notice(LIFECYCLE, self._first_seen + timedelta(seconds=self.heartbeat_seconds), "Terminated",
                       self.path, key=f"boot|{self.boot}")]


class MaintenanceMonitor(Monitor):
    """Scheduled events (``system-reboot``, ``instance-stop``, ``instance-retirement``...), announced days
    ahead. Canceled and completed events are ignored; the time is the event's ``NotBefore`` (now plus the
    standard notice when unreadable); the id is the ``EventId``. Reboots (``spotkit.runtime.notice.REBOOT_EVENTS``)
    say so in ``detail["reboot"]``: the instance comes back, the group is not terminating it."""

    kind, path, context = MAINTENANCE, MAINTENANCE_PATH, "checking for scheduled maintenance events"

    def __init__(self) -> None:
        self._pinned: dict[str, _Pinned] = {}

    def parse(self, body: str, now: datetime) -> list[Notice]:
        doc, problem = _json(body)
        if problem:
            raise NoticeParseError(f"{self.context}: {problem}")
        if not isinstance(doc, list):
            raise NoticeParseError(f"{self.context}: expected a JSON list, got a JSON {type(doc).__name__}")
        out = []
        for event in doc:
            if not isinstance(event, dict) or str(event.get("State", "active")).lower() in ("canceled", "completed"):
                continue
            event_id = event.get("EventId")
            key = event_id if isinstance(event_id, str) and event_id else \
                "event|" + hashlib.sha256(json.dumps(event, sort_keys=True, default=str).encode()).hexdigest()[:16]
            detail = {k: event[k] for k in ("EventId", "Description") if isinstance(event.get(k), str)}
            try:
                when = parse_time(event.get("NotBefore"))
            except TimeFormatError as exc:
                when = self._pinned.setdefault(key, _Pinned()).get(now, SPOT_NOTICE_SECONDS)
                detail["unreadable"] = f"{exc}; assumed now + {SPOT_NOTICE_SECONDS} s"
            code = event.get("Code")
            if code in REBOOT_EVENTS["aws"]:
                detail["reboot"] = True
            out.append(Notice(MAINTENANCE, when, code if isinstance(code, str) and code else "maintenance",
                              self.path, detail, key=key))
        return out


def default_monitors(heartbeat_seconds: float = DEFAULT_LIFECYCLE_SECONDS, boot: Optional[str] = None) -> list[Monitor]:
    boot = read_boot_id() if boot is None else boot
    return [SpotMonitor(), LifecycleMonitor(heartbeat_seconds, boot), RebalanceMonitor(boot), MaintenanceMonitor()]
