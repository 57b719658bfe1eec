"""A local Azure instance metadata service with Scheduled Events on cue (``spotkit imds-mock --cloud azure``).

Real paths, header and formats:

- every request needs ``Metadata: true`` and an ``api-version`` (400 with Azure's error bodies without
  them, and 400 with ``X-Forwarded-For``);
- ``GET /metadata/scheduledevents?api-version=2020-07-01`` -> ``{"DocumentIncarnation": N, "Events":
  [...]}``; each event has ``EventId``, ``EventType`` (``Preempt``, ``Terminate``, ``Reboot``,
  ``Redeploy``, ``Freeze``), ``ResourceType``, ``Resources``, ``EventStatus`` (``Scheduled``),
  ``NotBefore`` (RFC 1123), ``Description``, ``EventSource``, ``DurationInSeconds``;
- ``POST`` the same path ``{"StartRequests": [{"EventId": "..."}]}`` -> 200; the emulator records the
  request and the event is gone from the next document (the platform went ahead); the incarnation
  changes whenever the event list does;
- ``GET /metadata/instance?api-version=...`` -> ``{"compute": {...}, "network": {...}}``, and
  ``/metadata/instance/compute`` -> the ``compute`` object alone (``name`` is the VM name events use).

The document is the availability set's or scale set's, as on Azure: an event may name other VMs
(``resources``), this VM and others, or this VM alone (the default).

Control API under ``/spotkit/`` (no metadata header needed):

- ``POST /spotkit/interrupt`` ``{"kind": "preempt"|"terminate"|"reboot"|"redeploy"|"freeze",
  "lead_seconds": 30, "resources": ["vm-a", "vm-b"]}`` -> an event with ``NotBefore`` = now + lead (to
  the second) naming ``resources`` (default: this VM);
- ``POST /spotkit/cancel`` ``{"event_id": "..."}`` -> the event is withdrawn (new incarnation);
- ``POST /spotkit/mark`` ``{"label": "..."}`` -> appended to the journal (see below);
- ``POST /spotkit/reset``; ``GET /spotkit/state`` -> incarnation, events, start requests, counters and
  the journal: marks and start requests in the order the emulator received them, each with its sequence
  number, so a test reads the order of what happened from one record instead of comparing clocks.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Optional
from urllib.parse import parse_qs, urlsplit

from spotkit.rehearsal.imds.server import EmulatorServer, MetadataHandler

EVENTS_PATH = "/metadata/scheduledevents"
INSTANCE_PATH = "/metadata/instance"
COMPUTE_PATH = "/metadata/instance/compute"
EVENT_TYPES = {"preempt": "Preempt", "terminate": "Terminate", "reboot": "Reboot", "redeploy": "Redeploy",
               "freeze": "Freeze"}
DEFAULT_LEAD = {"Preempt": 30, "Terminate": 300, "Reboot": 900, "Redeploy": 600, "Freeze": 900}


def rfc1123(ts: float) -> str:
    """Epoch seconds -> ``Mon, 19 Sep 2016 18:29:47 GMT`` (Azure's NotBefore)."""
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%a, %d %b %Y %H:%M:%S GMT")


@dataclass
class AzureSettings:
    """- ``preempt_delay``: seconds from start to a ``Preempt`` event (None: never).
    - ``lead_seconds``: NotBefore of a preemption, seconds after it is posted (Azure: at least 30)."""

    preempt_delay: Optional[float] = None
    lead_seconds: float = 30.0
    vm_name: str = "spotkit-training-0"
    vm_id: str = "02aab8a4-74ef-476e-8182-f6d2ba4166a6"
    location: str = "eastus"
    vm_size: str = "Standard_NC6s_v3"


class AzureState:
    def __init__(self, settings: AzureSettings):
        self.settings = settings
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.incarnation = 1
        self.events: list[dict] = []
        self.pending: list[tuple[float, dict]] = []  # (visible from, event) for delayed events
        self.start_requests: list[dict] = []
        self.journal: list[dict] = []  # marks and start requests, in arrival order (seq)
        self.counters = {"requests": 0, "refused": 0, "acknowledged": 0}
        if self.settings.preempt_delay is not None:
            at = time.time() + self.settings.preempt_delay
            self.pending.append((at, self._event("Preempt", at, self.settings.lead_seconds)))

    def record(self, label: str, **fields) -> dict:
        entry = {"seq": len(self.journal) + 1, "label": label, **fields}
        self.journal.append(entry)
        return entry

    def compute(self) -> dict:
        s = self.settings
        return {"azEnvironment": "AzurePublicCloud", "location": s.location, "name": s.vm_name, "vmId": s.vm_id,
                "vmSize": s.vm_size, "priority": "Spot", "evictionPolicy": "Deallocate"}

    def _event(self, event_type: str, posted: float, lead: float, resources: Optional[list] = None) -> dict:
        return {"EventId": str(uuid.uuid4()).upper(), "EventType": event_type, "ResourceType": "VirtualMachine",
                "Resources": list(resources) if resources is not None else [self.settings.vm_name],
                "EventStatus": "Scheduled",
                "NotBefore": rfc1123(posted + lead),  # to the second, truncated (as the AWS emulator)
                "Description": f"{event_type} scheduled by spotkit imds-mock", "EventSource": "Platform",
                "DurationInSeconds": -1 if event_type in ("Preempt", "Terminate") else 5}

    def _promote(self) -> None:
        now = time.time()
        due = [e for at, e in self.pending if at <= now]
        if due:
            self.pending = [(at, e) for at, e in self.pending if at > now]
            self.events.extend(due)
            self.incarnation += 1

    def document(self) -> dict:
        self._promote()
        return {"DocumentIncarnation": self.incarnation, "Events": [dict(e) for e in self.events]}

    def interrupt(self, kind: str, lead: Optional[float], resources: Optional[list] = None) -> dict:
        event_type = EVENT_TYPES[kind]
        if lead is None:
            lead = self.settings.lead_seconds if event_type == "Preempt" else DEFAULT_LEAD[event_type]
        event = self._event(event_type, time.time(), lead, resources)
        self.events.append(event)
        self.incarnation += 1
        return {**event, "DocumentIncarnation": self.incarnation}

    def remove(self, event_ids: list) -> list:
        gone = [e for e in self.events if e["EventId"] in event_ids]
        if gone:
            self.events = [e for e in self.events if e["EventId"] not in event_ids]
            self.incarnation += 1
        return [e["EventId"] for e in gone]


class _Handler(MetadataHandler):
    server_version = "Microsoft-IIS/10.0"
    sys_version = ""

    def _check(self) -> Optional[tuple]:
        """None when the request may go on; else the 400 Azure answers (and its counter is bumped)."""
        st: AzureState = self.state
        query = parse_qs(urlsplit(self.path).query)
        error = None
        if self.headers.get("X-Forwarded-For"):
            error = "Bad request. Requests with X-Forwarded-For are not allowed"
        elif self.headers.get("Metadata", "").lower() != "true":
            error = "Bad request. Required metadata header not specified"
        elif not query.get("api-version"):
            error = "Bad request. api-version was not specified in the request"
        if error is None:
            return None
        with st.lock:
            st.counters["refused"] += 1
        return 400, {"error": error}

    def do_GET(self):  # noqa: N802
        st: AzureState = self.state
        path = urlsplit(self.path).path
        if path == "/spotkit/state":
            with st.lock:
                doc = {"incarnation": st.incarnation, "events": [dict(e) for e in st.events],
                       "start_requests": list(st.start_requests), "counters": dict(st.counters),
                       "journal": list(st.journal)}
            return self.send_json(200, doc)
        with st.lock:
            st.counters["requests"] += 1
        refused = self._check()
        if refused:
            return self.send_json(*refused)
        if path == EVENTS_PATH:
            with st.lock:
                return self.send_json(200, st.document())
        if path == INSTANCE_PATH:
            return self.send_json(200, {"compute": st.compute(), "network": {"interface": []}})
        if path == COMPUTE_PATH:
            return self.send_json(200, st.compute())
        return self.send_json(404, {"error": "Not found"})

    def do_POST(self):  # noqa: N802
        st: AzureState = self.state
        path = urlsplit(self.path).path
        if path.startswith("/spotkit/"):
            return self._control(path)
        with st.lock:
            st.counters["requests"] += 1
        refused = self._check()
        if refused:
            return self.send_json(*refused)
        if path != EVENTS_PATH:
            return self.send_json(405, {"error": "Method not allowed"})
        try:
            body = self.read_json()
            ids = [str(r["EventId"]) for r in body["StartRequests"]]
        except (ValueError, KeyError, TypeError):
            return self.send_json(400, {"error": "Bad request. Expected {\"StartRequests\": [{\"EventId\": ...}]}"})
        with st.lock:
            st.start_requests.append({"at": time.time(), "event_ids": ids})
            st.record("start-requests", event_ids=ids)
            st.counters["acknowledged"] += len(st.remove(ids))
        return self.send_body(200, "")

    def _control(self, path: str):
        st: AzureState = self.state
        try:
            body = self.read_json()
        except ValueError:
            return self.send_json(400, {"error": "body must be JSON"})
        with st.lock:
            if path == "/spotkit/interrupt":
                kind = body.get("kind", "preempt")
                if kind not in EVENT_TYPES:
                    return self.send_json(400, {"error": f"kind must be one of {', '.join(EVENT_TYPES)}"})
                lead = body.get("lead_seconds")
                resources = body.get("resources")
                if resources is not None and not (isinstance(resources, list)
                                                  and all(isinstance(r, str) for r in resources)):
                    return self.send_json(400, {"error": "resources must be a list of VM names"})
                return self.send_json(200, st.interrupt(kind, None if lead is None else float(lead), resources))
            if path == "/spotkit/mark":
                return self.send_json(200, st.record(str(body.get("label", ""))))
            if path == "/spotkit/cancel":
                gone = st.remove([body.get("event_id")])
                return self.send_json(200 if gone else 404, {"canceled": gone, "incarnation": st.incarnation})
            if path == "/spotkit/reset":
                st.reset()
                return self.send_json(200, {"reset": True})
        return self.send_json(404, {"error": "unknown control path"})


class AzureEmulator(EmulatorServer):
    """The Azure metadata emulator on a loopback port (``with AzureEmulator() as az: az.url``)."""

    name = "azure-metadata-emulator"

    def __init__(self, settings: Optional[AzureSettings] = None, host: str = "127.0.0.1", port: int = 0,
                 verbose: bool = False):
        self.settings = settings or AzureSettings()
        super().__init__(_Handler, AzureState(self.settings), host, port, verbose)

    def interrupt(self, kind: str = "preempt", lead_seconds: Optional[float] = None,
                  resources: Optional[list] = None) -> dict:
        """An event of ``kind`` naming ``resources`` (default: this VM alone)."""
        with self.state.lock:
            return self.state.interrupt(kind, lead_seconds, resources)

    def serve_events(self, events: list) -> int:
        """Serve ``events`` (e.g. a documented sample, verbatim) as the current events; returns the new
        incarnation."""
        with self.state.lock:
            self.state.events = [dict(e) for e in events]
            self.state.incarnation += 1
            return self.state.incarnation

    def cancel(self, event_id: str) -> list:
        with self.state.lock:
            return self.state.remove([event_id])

    def snapshot(self) -> dict:
        with self.state.lock:
            doc = self.state.document()
            return {"incarnation": doc["DocumentIncarnation"], "events": doc["Events"],
                    "start_requests": list(self.state.start_requests), "counters": dict(self.state.counters),
                    "journal": list(self.state.journal)}

    def reset(self) -> None:
        with self.state.lock:
            self.state.reset()
