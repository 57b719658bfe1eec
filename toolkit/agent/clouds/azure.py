"""Azure: Scheduled Events from the instance metadata service.

``GET /metadata/scheduledevents?api-version=2020-07-01`` with ``Metadata: true`` returns
``{"DocumentIncarnation": N, "Events": [...]}``; each event has an ``EventId``, an ``EventType``, an
``EventStatus`` (``Scheduled``, then ``Started``) and a ``NotBefore`` (RFC 1123, ``Mon, 19 Sep 2016
18:29:47 GMT``; empty once started). The document's incarnation changes whenever an event is added,
changed or removed.

- ``Preempt`` (a spot VM evicted, at least 30 s ahead) drains as a ``spot-interruption``;
- ``Terminate`` (the VM is being deleted) drains as a ``scheduled-change`` with action ``Terminate``;
- ``Reboot``, ``Redeploy``, ``Freeze`` are logged (optional hook) and never drain: the VM comes back.

The notice time is ``NotBefore`` (an empty one: the first detection plus the platform's 30 s window).
After the drain (the hook, the signal, the workload's exit or its deadline) the agent acknowledges the
event with ``POST {"StartRequests": [{"EventId": ...}]}`` so Azure proceeds at once instead of waiting
for ``NotBefore``. Standard library only, Python 3.9.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Callable, Optional

from toolkit.agent.clouds.client import make_notice
from toolkit.agent.imds import ImdsError
from toolkit.agent.notices import MAINTENANCE, SPOT, Notice, NoticeParseError
from toolkit.notice import STANDARD_NOTICE_SECONDS, TimeFormatError, parse_time

HEADER = ("Metadata", "true")
API_VERSION = "2020-07-01"
EVENTS_PATH = f"/metadata/scheduledevents?api-version={API_VERSION}"
NOTICE_SECONDS = STANDARD_NOTICE_SECONDS["azure"]
DRAINING = {"Preempt": SPOT, "Terminate": MAINTENANCE}
ADVISORY = ("Reboot", "Redeploy", "Freeze")


def _noop(event: str, **fields) -> None:
    return None


class AzureScheduledEventsMonitor:
    """Reads the scheduled events document; acknowledges a drained event after the drain."""

    kind, path, context = SPOT, EVENTS_PATH, "checking Azure scheduled events"

    def __init__(self, client, *, notice_seconds: float = NOTICE_SECONDS, log: Callable[..., object] = _noop):
        self.client = client
        self.notice_seconds = notice_seconds
        self.log = log
        self.incarnation: Optional[int] = None
        self._first_seen: dict[str, datetime] = {}
        self._times: dict[str, datetime] = {}  # EventId -> notice time (kept when NotBefore empties on Started)
        self.acknowledged: list[str] = []

    def fetch(self) -> str:
        resp = self.client.get(self.path)
        if resp.status != 200:
            raise ImdsError(f"GET {self.path}: HTTP {resp.status}: {resp.body[:200]}")
        return resp.body

    def clear(self) -> None:
        self._first_seen.clear()
        self._times.clear()

    def parse(self, body: str, now: datetime) -> list[Notice]:
        try:
            doc = json.loads(body)
        except ValueError as exc:
            raise NoticeParseError(f"body is not JSON: {body[:200]!r}") from exc
        if not isinstance(doc, dict) or not isinstance(doc.get("Events"), list):
            raise NoticeParseError(f"expected {{\"DocumentIncarnation\", \"Events\": [...]}}, got {body[:200]!r}")
        incarnation = doc.get("DocumentIncarnation")
        if incarnation != self.incarnation:
            self.log("scheduled-events-changed", cloud="azure", incarnation=incarnation, previous=self.incarnation,
                     events=[{k: e.get(k) for k in ("EventId", "EventType", "EventStatus", "NotBefore")}
                             for e in doc["Events"] if isinstance(e, dict)])
            self.incarnation = incarnation
        current = set()
        out = []
        for event in doc["Events"]:
            if not isinstance(event, dict) or not event.get("EventId"):
                continue
            notice = self._notice(event, incarnation, now)
            if notice is not None:
                current.add(event["EventId"])
                out.append(notice)
        for gone in set(self._first_seen) - current:  # canceled or completed: forget it
            del self._first_seen[gone]
            self._times.pop(gone, None)
        return out

    def _notice(self, event: dict, incarnation, now: datetime) -> Optional[Notice]:
        event_type, event_id = str(event.get("EventType", "")), str(event["EventId"])
        if event_type not in DRAINING and event_type not in ADVISORY:
            return None
        first = self._first_seen.setdefault(event_id, now)
        not_before = event.get("NotBefore") or ""
        if not_before:
            try:
                when = parse_time(not_before)
            except TimeFormatError as exc:
                raise NoticeParseError(f"event {event_id}: {exc}") from None
        else:  # started (the time is the one it had), or never given: the platform's window from first sight
            when = self._times.get(event_id) or first + timedelta(seconds=self.notice_seconds)
        self._times[event_id] = when  # a new NotBefore (rescheduled) is a new notice; Started is the same one
        detail = {"cloud": "azure", "EventId": event_id, "EventType": event_type,
                  "EventStatus": event.get("EventStatus"), "DocumentIncarnation": incarnation,
                  "NotBefore": not_before}
        if event_type in ADVISORY:
            detail["advisory"] = True
        return make_notice(DRAINING.get(event_type, MAINTENANCE), when, event_type, EVENTS_PATH, detail,
                           key=f"azure-event|{event_id}|{when.strftime('%Y-%m-%dT%H:%M:%SZ')}")

    def after_drain(self, notice: Notice) -> Optional[dict]:
        """Acknowledge a drained event (``StartRequests``): Azure may proceed now. None: nothing to do."""
        event_id = notice.detail.get("EventId")
        if notice.detail.get("cloud") != "azure" or not event_id or event_id in self.acknowledged:
            return None
        resp = self.client.request("POST", EVENTS_PATH, {"StartRequests": [{"EventId": event_id}]})
        if resp.status != 200:
            raise ImdsError(f"POST {EVENTS_PATH}: HTTP {resp.status}: {resp.body[:200]}")
        self.acknowledged.append(event_id)
        return {"cloud": "azure", "event_id": event_id, "event_type": notice.action, "status": resp.status}
