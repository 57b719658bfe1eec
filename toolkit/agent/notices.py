"""Monitors: one per IMDS path, each turning what it reads into the same ``Notice`` type.

Detect, decide, act (aws-node-termination-handler): the monitors only detect; the agent decides what a
notice means (run the checkpoint hook, signal the workload, complete the lifecycle action).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Optional

# Same words as the event-driven handler (toolkit/interruption/events.py), so a hook sees one vocabulary
# whichever side detected the notice.
SPOT = "spot-interruption"
REBALANCE = "rebalance-recommendation"
LIFECYCLE = "asg-lifecycle-terminate"
MAINTENANCE = "scheduled-change"
TERMINAL_KINDS = (SPOT, LIFECYCLE, MAINTENANCE)

SPOT_PATH = "/latest/meta-data/spot/instance-action"
REBALANCE_PATH = "/latest/meta-data/events/recommendations/rebalance"
LIFECYCLE_PATH = "/latest/meta-data/autoscaling/target-lifecycle-state"
MAINTENANCE_PATH = "/latest/meta-data/events/maintenance/scheduled"


class NoticeParseError(ValueError):
    """IMDS returned a body this monitor cannot read (the notice is dropped, polling goes on)."""


@dataclass(frozen=True)
class Notice:
    """A normalized interruption notice.

    ``time`` is when the instance goes away (spot action time, lifecycle deadline, maintenance start) or,
    for a rebalance recommendation, when it was issued. ``id`` is deterministic: the same notice read
    twice (or by the agent after a restart) has the same id.
    """

    kind: str
    time: datetime
    action: str
    source: str
    detail: dict = field(default_factory=dict, compare=False)

    @property
    def id(self) -> str:
        key = f"{self.kind}|{self.action}|{self.time.strftime('%Y-%m-%dT%H:%M:%SZ')}|{self.detail.get('EventId', '')}"
        return f"{self.kind}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"

    @property
    def terminal(self) -> bool:
        return self.kind in TERMINAL_KINDS

    def to_dict(self) -> dict:
        return {"id": self.id, "kind": self.kind, "action": self.action, "time": iso(self.time),
                "source": self.source, **({"detail": self.detail} if self.detail else {})}


def iso(when: datetime) -> str:
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text: str) -> datetime:
    try:
        return datetime.strptime(text.strip(), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        try:
            return datetime.fromisoformat(text.strip().replace("Z", "+00:00")).astimezone(timezone.utc)
        except ValueError as exc:
            raise NoticeParseError(f"not an ISO 8601 UTC time: {text!r}") from exc


def _json(body: str, what: str):
    try:
        return json.loads(body)
    except ValueError as exc:
        raise NoticeParseError(f"{what}: body is not JSON: {body[:200]!r}") from exc


class Monitor:
    """Reads one path. ``parse`` gets the 200 body (404 means nothing to report) and the detection time."""

    kind = ""
    path = ""
    context = ""

    def parse(self, body: str, now: datetime) -> list[Notice]:
        raise NotImplementedError


class SpotMonitor(Monitor):
    kind, path, context = SPOT, SPOT_PATH, "checking for spot interruption notices"

    def parse(self, body: str, now: datetime) -> list[Notice]:
        doc = _json(body, self.context)
        if not isinstance(doc, dict) or "action" not in doc or "time" not in doc:
            raise NoticeParseError(f"{self.context}: expected {{\"action\", \"time\"}}, got {body[:200]!r}")
        return [Notice(SPOT, parse_iso(doc["time"]), str(doc["action"]), self.path)]


class RebalanceMonitor(Monitor):
    kind, path, context = REBALANCE, REBALANCE_PATH, "checking for rebalance recommendations"

    def parse(self, body: str, now: datetime) -> list[Notice]:
        doc = _json(body, self.context)
        if not isinstance(doc, dict) or "noticeTime" not in doc:
            raise NoticeParseError(f"{self.context}: expected {{\"noticeTime\"}}, got {body[:200]!r}")
        return [Notice(REBALANCE, parse_iso(doc["noticeTime"]), "rebalance", self.path)]


class LifecycleMonitor(Monitor):
    """``Terminated`` means the Auto Scaling group is terminating this instance (scale-in, rebalance,
    refresh, or a spot reclaim seen by the group). AWS gives no time here: the notice time is the
    detection time plus the lifecycle hook's heartbeat (``heartbeat_seconds``)."""

    kind, path, context = LIFECYCLE, LIFECYCLE_PATH, "checking the Auto Scaling target lifecycle state"

    def __init__(self, heartbeat_seconds: float = 300):
        self.heartbeat_seconds = heartbeat_seconds
        self._first_seen: Optional[datetime] = None

    def parse(self, body: str, now: datetime) -> list[Notice]:
        state = body.strip()
        if state != "Terminated":
            self._first_seen = None
            return []
        if self._first_seen is None:  # keep the time (and so the id) stable across polls
            self._first_seen = now.replace(microsecond=0)
        return [Notice(LIFECYCLE, self._first_seen + timedelta(seconds=self.heartbeat_seconds), "Terminated",
                       self.path)]


class MaintenanceMonitor(Monitor):
    """Scheduled events (``system-reboot``, ``instance-stop``, ``instance-retirement``...), announced days
    ahead. Canceled and completed events are ignored; the time is the event's ``NotBefore``."""

    kind, path, context = MAINTENANCE, MAINTENANCE_PATH, "checking for scheduled maintenance events"

    def parse(self, body: str, now: datetime) -> list[Notice]:
        doc = _json(body, self.context)
        if not isinstance(doc, list):
            raise NoticeParseError(f"{self.context}: expected a JSON list, got {body[:200]!r}")
        out = []
        for event in doc:
            if not isinstance(event, dict) or str(event.get("State", "active")).lower() in ("canceled", "completed"):
                continue
            try:
                when = datetime.strptime(event["NotBefore"], "%d %b %Y %H:%M:%S %Z").replace(tzinfo=timezone.utc)
            except (KeyError, ValueError) as exc:
                raise NoticeParseError(f"{self.context}: unreadable NotBefore in {event!r}") from exc
            out.append(Notice(MAINTENANCE, when, str(event.get("Code", "maintenance")), self.path,
                              {k: event[k] for k in ("EventId", "Description") if k in event}))
        return out


def default_monitors(heartbeat_seconds: float = 300) -> list[Monitor]:
    return [SpotMonitor(), LifecycleMonitor(heartbeat_seconds), RebalanceMonitor(), MaintenanceMonitor()]
