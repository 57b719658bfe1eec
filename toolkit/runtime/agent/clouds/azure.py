"""Azure: Scheduled Events from the instance metadata service.

``GET /metadata/scheduledevents?api-version=2020-07-01`` with ``Metadata: true`` returns
``{"DocumentIncarnation": N, "Events": [...]}``; each event has an ``EventId``, an ``EventType``, an
``EventStatus`` (``Scheduled``, then ``Started``) and a ``NotBefore`` (RFC 1123, ``Mon, 19 Sep 2016
18:29:47 GMT``; empty once started). The document's incarnation changes whenever an event is added,
changed or removed.

Whose event. The document is served to every VM of an availability set or a scale set placement group,
and each event names the VMs it concerns in ``Resources`` (VM names, e.g. ``["WestNO_0", "WestNO_1"]``).
The monitor acts only on events whose ``Resources`` name this VM (``compute.name`` from
``/metadata/instance/compute``, compared without case, as Azure names are); every other event is logged
once (``scheduled-event-not-ours``) and left alone: no hook, no signal, no acknowledgement. Until this
VM's name has been read, nothing is acted on and the poll error says why (it is read again each poll).

- ``Preempt`` (a spot VM evicted, at least 30 s ahead) drains as a ``spot-interruption``;
- ``Terminate`` (the VM is being deleted, 5 to 15 min ahead) drains as a ``scheduled-change``;
- ``Reboot`` and ``Redeploy`` (the VM comes back, its memory and processes do not) drain as a
  ``scheduled-change`` with ``detail["reboot"]``: one reboot policy with AWS's ``system-reboot``
  (``spotkit.runtime.notice.REBOOT_EVENTS``, docs/agent.md);
- ``Freeze`` (a pause of seconds, memory kept) is advisory: logged, optional hook, no drain.

The notice time is ``NotBefore`` (an empty one: the first detection plus the platform's 30 s window).
After the drain (the hook, the signal, the workload's exit or its deadline) the agent acknowledges the
event with ``POST {"StartRequests": [{"EventId": ...}]}`` so Azure proceeds at once instead of waiting
for ``NotBefore``, but only when the event names this VM alone: an acknowledgement lets the event
proceed for every VM it names, and the others may still be saving their work. Standard library only,
Python 3.9.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Callable, Optional

from spotkit.runtime.agent.clouds.client import make_notice, ok_body
from spotkit.runtime.agent.imds import ImdsError
from spotkit.runtime.agent.notices import MAINTENANCE, SPOT, Notice, NoticeParseError
from spotkit.runtime.notice import REBOOT_EVENTS, STANDARD_NOTICE_SECONDS, TimeFormatError, parse_time

HEADER = ("Metadata", "true")
API_VERSION = "2020-07-01"
EVENTS_PATH = f"/metadata/scheduledevents?api-version={API_VERSION}"
NOTICE_SECONDS = STANDARD_NOTICE_SECONDS["azure"]
COMPUTE_PATH = "/metadata/instance/compute?api-version=2021-02-01"
DRAINING = {"Preempt": SPOT, "Terminate": MAINTENANCE, **{t: MAINTENANCE for t in REBOOT_EVENTS["azure"]}}
ADVISORY = ("Freeze",)


def read_identity(client) -> tuple:
    """(``vmId``, ``name``) of this VM from ``/metadata/instance/compute``; ImdsError when unreadable."""
    resp = client.get(COMPUTE_PATH)
    if resp.status != 200:
        raise ImdsError(f"reading this VM's name: GET {COMPUTE_PATH}: HTTP {resp.status}: {resp.body[:200]}")
    try:
        compute = json.loads(resp.body)
    except ValueError:
        compute = None
    name = compute.get("name") if isinstance(compute, dict) else None
    if not isinstance(name, str) or not name.strip():
        raise ImdsError(f"reading this VM's name: GET {COMPUTE_PATH} gave no compute name: {resp.body[:200]!r}")
    vm_id = compute.get("vmId")
    return (vm_id.strip() if isinstance(vm_id, str) and vm_id.strip() else name.strip()), name.strip()


def _same_vm(a: str, b: str) -> bool:
    """Azure resource names are case-insensitive; api-versions before 2017-08-01 prefixed an underscore."""
    return a.lstrip("_").casefold() == b.lstrip("_").casefold()


def names_vm(resources, vm_name: str) -> bool:
    """True when the event's ``Resources`` list names ``vm_name``."""
    return isinstance(resources, list) and any(isinstance(r, str) and _same_vm(r, vm_name) for r in resources)


def _noop(event: str, **fields) -> None:
    return None


class AzureScheduledEventsMonitor:
    """Reads the scheduled events document; acknowledges a drained event after the drain."""

    kind, path, context = SPOT, EVENTS_PATH, "checking Azure scheduled events"

    def __init__(self, client, *, notice_seconds: float = NOTICE_SECONDS, log: Callable[..., object] = _noop,
                 identity=None):
        from spotkit.runtime.agent.clouds.client import InstanceIdentity

        self.client = client
        self.notice_seconds = notice_seconds
        self.log = log
        self.identity = identity or InstanceIdentity(lambda: read_identity(client))
        self.not_ours: set = set()  # EventIds seen that name other VMs only (logged once each)
        self.incarnation: Optional[int] = None
        self._first_seen: dict[str, datetime] = {}
        self._times: dict[str, datetime] = {}  # EventId -> notice time (kept when NotBefore empties on Started)
        self.acknowledged: list[str] = []

    def fetch(self) -> str:
        return ok_body(self.client.get(self.path), self.path)

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
        try:
            vm_name = self.identity.name
        except ImdsError as exc:
            raise ImdsError(f"{exc}: cannot tell which scheduled events are this VM's, none acted on yet") from None
        if incarnation != self.incarnation:
            self.log("scheduled-events-changed", cloud="azure", incarnation=incarnation, previous=self.incarnation,
                     vm=vm_name, events=[{k: e.get(k) for k in ("EventId", "EventType", "EventStatus", "NotBefore",
                                                                "Resources")}
                                         for e in doc["Events"] if isinstance(e, dict)])
            self.incarnation = incarnation
        current = set()
        out = []
        for event in doc["Events"]:
            if not isinstance(event, dict) or not event.get("EventId"):
                continue
            if not names_vm(event.get("Resources"), vm_name):
                self._not_ours(event, vm_name)
                continue
            notice = self._notice(event, incarnation, now)
            if notice is not None:
                current.add(event["EventId"])
                out.append(notice)
        for gone in set(self._first_seen) - current:  # canceled or completed: forget it
            del self._first_seen[gone]
            self._times.pop(gone, None)
        return out

    def _not_ours(self, event: dict, vm_name: str) -> None:
        event_id = str(event["EventId"])
        if event_id in self.not_ours:
            return
        self.not_ours.add(event_id)
        self.log("scheduled-event-not-ours", cloud="azure", vm=vm_name, event_id=event_id,
                 event_type=event.get("EventType"), resources=event.get("Resources"),
                 note="the event names other VMs only: left alone (no hook, no signal, no acknowledgement)")

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
                  "NotBefore": not_before, "Resources": list(event.get("Resources") or [])}
        if event_type in ADVISORY:
            detail["advisory"] = True
        if event_type in REBOOT_EVENTS["azure"]:
            detail["reboot"] = True
        return make_notice(DRAINING.get(event_type, MAINTENANCE), when, event_type, EVENTS_PATH, detail,
                           key=f"azure-event|{event_id}|{when.strftime('%Y-%m-%dT%H:%M:%SZ')}")

    def after_drain(self, notice: Notice, dry_run: bool = False) -> Optional[dict]:
        """Acknowledge a drained event (``StartRequests``): Azure may proceed now. None: nothing to do;
        ``{"event": "acknowledge-skipped", ...}``: an event that names other VMs too is not acknowledged."""
        event_id = notice.detail.get("EventId")
        if notice.detail.get("cloud") != "azure" or not event_id or event_id in self.acknowledged:
            return None
        resources = notice.detail.get("Resources") or []
        vm_name = self.identity.name
        others = [r for r in resources if not (isinstance(r, str) and _same_vm(r, vm_name))]
        if others or not resources:
            return {"event": "acknowledge-skipped", "cloud": "azure", "event_id": event_id,
                    "event_type": notice.action, "vm": vm_name, "other_vms": others,
                    "reason": "the event names other VMs too: acknowledging would let it proceed for them, "
                              "so Azure starts it at NotBefore"}
        if dry_run:
            return {"event": "would-have-acknowledged", "cloud": "azure", "event_id": event_id,
                    "event_type": notice.action}
        resp = self.client.request("POST", EVENTS_PATH, {"StartRequests": [{"EventId": event_id}]})
        if resp.status != 200:
            raise ImdsError(f"POST {EVENTS_PATH}: HTTP {resp.status}: {resp.body[:200]}")
        self.acknowledged.append(event_id)
        return {"cloud": "azure", "event_id": event_id, "event_type": notice.action, "status": resp.status}
