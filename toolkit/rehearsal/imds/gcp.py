"""A local GCP metadata server that can preempt the VM on cue (``spotkit imds-mock --cloud gcp``).

Real paths, header and formats:

- every request needs ``Metadata-Flavor: Google`` (403 without it, and 403 with ``X-Forwarded-For``, as
  GCP does); every answer carries ``Metadata-Flavor: Google`` and an ``ETag`` of the value;
- ``/computeMetadata/v1/instance/preempted`` -> ``FALSE``, then ``TRUE``;
- ``/computeMetadata/v1/instance/maintenance-event`` -> ``NONE``, ``MIGRATE_ON_HOST_MAINTENANCE`` or
  ``TERMINATE_ON_HOST_MAINTENANCE``;
- ``?wait_for_change=true`` (with ``last_etag`` and ``timeout_sec``): a hanging GET, answered when the
  value differs from ``last_etag`` (at once if it already does) or at the timeout with the current value;
  ``wait_for_change=False`` in the settings refuses it with 400 (a proxy without hanging GETs);
- ``instance/id``, ``instance/name``, ``instance/zone``, ``instance/machine-type``,
  ``instance/scheduling/preemptible``, ``project/project-id``.

Control API under ``/spotkit/`` (no metadata header needed):

- ``POST /spotkit/interrupt`` ``{"kind": "preempt"}`` or ``{"kind": "maintenance", "action":
  "TERMINATE_ON_HOST_MAINTENANCE"}`` -> the value changes now;
- ``POST /spotkit/reset`` -> no notices, delays restart from now;
- ``GET /spotkit/state`` -> counters (requests, refused, hanging GETs) and the values in force.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass
from typing import Optional
from urllib.parse import parse_qs, urlsplit

from spotkit.rehearsal.imds.server import EmulatorServer, MetadataHandler

ROOT = "/computeMetadata/v1/"
PREEMPTED = ROOT + "instance/preempted"
MAINTENANCE = ROOT + "instance/maintenance-event"
MAINTENANCE_VALUES = ("NONE", "MIGRATE_ON_HOST_MAINTENANCE", "TERMINATE_ON_HOST_MAINTENANCE")
KINDS = ("preempt", "maintenance")
MAX_WAIT_SECONDS = 3600


def etag(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:16]


@dataclass
class GcpSettings:
    """- ``preempt_delay``: seconds from start to ``preempted`` turning ``TRUE`` (None: never).
    - ``maintenance``: the maintenance-event value from start (``NONE``).
    - ``wait_for_change``: serve hanging GETs (default on, as GCP does)."""

    preempt_delay: Optional[float] = None
    maintenance: str = "NONE"
    wait_for_change: bool = True
    instance_id: str = "4520031799277581759"
    name: str = "spotkit-training-0"
    zone: str = "us-central1-a"
    project: str = "spotkit-demo"
    project_number: str = "123456789012"
    machine_type: str = "a2-highgpu-1g"

    def __post_init__(self) -> None:
        if self.maintenance not in MAINTENANCE_VALUES:
            raise ValueError(f"maintenance must be one of {', '.join(MAINTENANCE_VALUES)} (got {self.maintenance!r})")


class GcpState:
    def __init__(self, settings: GcpSettings):
        self.settings = settings
        self.lock = threading.Condition()
        self.reset()

    def reset(self) -> None:
        s = self.settings
        self.preempted_at = None if s.preempt_delay is None else time.time() + s.preempt_delay
        self.maintenance = s.maintenance
        self.counters = {"requests": 0, "refused": 0, "hanging_gets": 0, "wait_refused": 0}

    def interrupt(self, kind: str, action: Optional[str]) -> dict:
        if kind == "preempt":
            self.preempted_at = time.time()
        else:
            value = action or "TERMINATE_ON_HOST_MAINTENANCE"
            if value not in MAINTENANCE_VALUES:
                raise ValueError(f"action must be one of {', '.join(MAINTENANCE_VALUES)}")
            self.maintenance = value
        self.lock.notify_all()
        return {"kind": kind, "preempted": self.value(PREEMPTED), "maintenance-event": self.maintenance}

    def value(self, path: str) -> Optional[str]:
        s = self.settings
        if path == PREEMPTED:
            return "TRUE" if self.preempted_at is not None and time.time() >= self.preempted_at else "FALSE"
        static = {
            MAINTENANCE: self.maintenance,
            ROOT + "instance/id": s.instance_id,
            ROOT + "instance/name": s.name,
            ROOT + "instance/zone": f"projects/{s.project_number}/zones/{s.zone}",
            ROOT + "instance/machine-type": f"projects/{s.project_number}/machineTypes/{s.machine_type}",
            ROOT + "instance/scheduling/preemptible": "TRUE",
            ROOT + "project/project-id": s.project,
            ROOT + "project/numeric-project-id": s.project_number,
            ROOT: "instance/\nproject/\n",
            ROOT + "instance/": "id\nmachine-type\nmaintenance-event\nname\npreempted\nscheduling/\nzone\n",
        }
        return static.get(path)


class _Handler(MetadataHandler):
    server_version = "Metadata Server for VM"
    sys_version = ""

    def _refuse(self, why: str) -> None:
        with self.state.lock:
            self.state.counters["refused"] += 1
        self.send_body(403, f"Your client does not have permission to get URL {self.path} from this server. "
                            f"{why}\n", "text/html; charset=UTF-8")

    def do_GET(self):  # noqa: N802
        st: GcpState = self.state
        if self.path == "/spotkit/state":
            with st.lock:
                doc = {"counters": dict(st.counters), "preempted": st.value(PREEMPTED),
                       "maintenance-event": st.maintenance}
            return self.send_json(200, doc)
        with st.lock:
            st.counters["requests"] += 1
        if self.headers.get("X-Forwarded-For"):
            return self._refuse("Requests with X-Forwarded-For are refused.")
        if self.headers.get("Metadata-Flavor") != "Google":
            return self._refuse("Missing Metadata-Flavor:Google header.")
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        with st.lock:
            value = st.value(parts.path)
        if value is None:
            return self.send_body(404, "Not Found\n", headers={"Metadata-Flavor": "Google"})
        if query.get("wait_for_change", "").lower() == "true":
            if not st.settings.wait_for_change:
                with st.lock:
                    st.counters["wait_refused"] += 1
                return self.send_body(400, "wait_for_change is not supported here\n",
                                      headers={"Metadata-Flavor": "Google"})
            try:
                timeout = min(float(query.get("timeout_sec", MAX_WAIT_SECONDS)), MAX_WAIT_SECONDS)
            except ValueError:
                return self.send_body(400, "timeout_sec must be a number\n", headers={"Metadata-Flavor": "Google"})
            value = self._wait(parts.path, query.get("last_etag") or etag(value), timeout)
        return self.send_body(200, value, "application/text",
                              {"Metadata-Flavor": "Google", "ETag": etag(value)})

    def _wait(self, path: str, last: str, timeout: float) -> str:
        """The value once its ETag differs from ``last``, or at ``timeout`` (a delayed preemption wakes too)."""
        st: GcpState = self.state
        end = time.monotonic() + timeout
        with st.lock:
            st.counters["hanging_gets"] += 1
            while True:
                value = st.value(path) or ""
                left = end - time.monotonic()
                if etag(value) != last or left <= 0:
                    return value
                st.lock.wait(min(left, 0.05))

    def do_POST(self):  # noqa: N802
        st: GcpState = self.state
        if not self.path.startswith("/spotkit/"):
            return self.send_body(405, "Method Not Allowed\n", headers={"Metadata-Flavor": "Google"})
        try:
            body = self.read_json()
        except ValueError:
            return self.send_json(400, {"error": "body must be JSON"})
        with st.lock:
            if self.path == "/spotkit/interrupt":
                kind = body.get("kind", "preempt")
                if kind not in KINDS:
                    return self.send_json(400, {"error": f"kind must be one of {', '.join(KINDS)}"})
                try:
                    return self.send_json(200, st.interrupt(kind, body.get("action")))
                except ValueError as exc:
                    return self.send_json(400, {"error": str(exc)})
            if self.path == "/spotkit/reset":
                st.reset()
                st.lock.notify_all()
                return self.send_json(200, {"reset": True})
        return self.send_json(404, {"error": "unknown control path"})


class GcpEmulator(EmulatorServer):
    """The GCP metadata emulator on a loopback port (``with GcpEmulator() as gcp: gcp.url``)."""

    name = "gcp-metadata-emulator"

    def __init__(self, settings: Optional[GcpSettings] = None, host: str = "127.0.0.1", port: int = 0,
                 verbose: bool = False):
        self.settings = settings or GcpSettings()
        super().__init__(_Handler, GcpState(self.settings), host, port, verbose)

    def interrupt(self, kind: str = "preempt", action: Optional[str] = None) -> dict:
        with self.state.lock:
            return self.state.interrupt(kind, action)

    def reset(self) -> None:
        with self.state.lock:
            self.state.reset()
            self.state.lock.notify_all()

    def counters(self) -> dict:
        with self.state.lock:
            return dict(self.state.counters)
