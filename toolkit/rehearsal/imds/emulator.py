"""A local EC2 instance metadata service (IMDS) that can announce interruptions on cue.

It serves the real paths and formats, so the agent (and your own checkpoint hooks) can be rehearsed
on a laptop:

- ``PUT /latest/api/token`` with ``X-aws-ec2-metadata-token-ttl-seconds: 1..21600`` -> a token
  (400 when the header is missing or out of range, 403 when ``X-Forwarded-For`` is set, like AWS);
- ``GET /latest/meta-data/...`` with ``X-aws-ec2-metadata-token``: 401 for an unknown or expired token,
  and 401 without a token when IMDSv2 is required;
- ``instance-id``, ``instance-type``, ``ami-id``, ``local-ipv4``, ``placement/availability-zone``,
  ``placement/region``, ``tags/instance`` (listing) and ``tags/instance/<key>``;
- ``spot/instance-action`` -> ``{"action": "terminate", "time": "2026-11-23T08:22:00Z"}`` and
  ``spot/termination-time``, 404 until the notice;
- ``events/recommendations/rebalance`` -> ``{"noticeTime": "..."}``, 404 until the recommendation;
- ``autoscaling/target-lifecycle-state`` -> ``InService``, then ``Terminated``;
- ``events/maintenance/scheduled`` -> ``[]``, or a list with one ``system-reboot`` event.

Notices arrive after a delay counted from start (``spot_delay`` etc.; ``None`` = never) or at once
through the control API, kept apart from the real paths under ``/spotkit/``:

- ``POST /spotkit/interrupt`` ``{"kind": "spot"|"rebalance"|"lifecycle"|"scheduled",
  "action": "terminate", "lead_seconds": 120}`` -> the notice is visible from now on;
- ``POST /spotkit/outage`` ``{"requests": N, "mode": "drop"|"500"}`` -> the next N metadata requests
  are dropped without a response (connection error) or answered 500;
- ``POST /spotkit/override`` ``{"path": "/latest/meta-data/...", "status": 200, "body": "...",
  "delay": 0, "mode": "answer"|"drop"}`` -> that path answers this from now on, whatever the notices
  (a misbehaving metadata service for fault tests); ``{"path": ..., "clear": true}`` removes it;
- ``POST /spotkit/reset`` -> no notices, no overrides, delays restart from now, tokens forgotten;
- ``GET /spotkit/state`` -> counters (requests, token PUTs, 401s) and the notices in force.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler
from typing import Mapping, Optional

from spotkit.rehearsal.imds.server import EmulatorServer
from spotkit.runtime.notice import SPOT_NOTICE_SECONDS, TAG_GROUP

TOKEN_HEADER = "X-aws-ec2-metadata-token"
TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
MAX_TOKEN_TTL = 21600
SPOT_ACTIONS = ("terminate", "stop", "hibernate")
NOTICE_KINDS = ("spot", "rebalance", "lifecycle", "scheduled")
DEFAULT_LEAD_SECONDS = SPOT_NOTICE_SECONDS  # AWS gives two minutes between the spot notice and the action


def iso(ts: float) -> str:
    """Epoch seconds -> ``2026-11-23T08:22:00Z`` (the IMDS format)."""
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def maintenance_time(ts: float) -> str:
    """Epoch seconds -> ``23 Nov 2026 08:22:00 GMT`` (the format of scheduled maintenance events)."""
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%d %b %Y %H:%M:%S GMT")


@dataclass
class EmulatorSettings:
    """What the emulated instance looks like and when its notices arrive (seconds after start)."""

    imdsv2_required: bool = False
    token_api: bool = True  # False: the token PUT answers 404, like an IMDSv1-only proxy or emulator
    spot_action: str = "terminate"
    spot_delay: Optional[float] = None
    rebalance_delay: Optional[float] = None
    lifecycle_delay: Optional[float] = None
    scheduled: bool = False
    lead_seconds: float = DEFAULT_LEAD_SECONDS
    instance_id: str = "i-0123456789abcdef0"
    instance_type: str = "m6i.large"
    region: str = "us-east-1"
    availability_zone: str = "us-east-1a"
    ami_id: str = "ami-0123456789abcdef0"
    local_ipv4: str = "10.0.1.10"
    tags: Mapping[str, str] = field(default_factory=lambda: {
        "aws:autoscaling:groupName": "spotkit-training", TAG_GROUP: "spotkit-training"})

    def __post_init__(self) -> None:
        if self.spot_action not in SPOT_ACTIONS:
            raise ValueError(f"spot_action must be one of {', '.join(SPOT_ACTIONS)} (got {self.spot_action!r})")


class _State:
    """Mutable emulator state, guarded by one lock (the server is threaded)."""

    def __init__(self, settings: EmulatorSettings, token_clock: Callable[[], float] = time.monotonic):
        self.settings = settings
        self.token_clock = token_clock  # token expiry: a test moves it instead of waiting a TTL out
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        s = self.settings
        now = time.time()
        self.tokens: dict[str, float] = {}
        self.counters = {"requests": 0, "token_puts": 0, "unauthorized": 0, "dropped": 0, "errors": 0}
        self.outage_left = 0
        self.outage_mode = "drop"
        self.overrides: dict[str, dict] = {}  # path -> {"status", "body", "delay", "mode"}
        # kind -> (visible from epoch, action, action time epoch)
        self.notices: dict[str, tuple[float, str, float]] = {}
        for kind, delay, action in (("spot", s.spot_delay, s.spot_action), ("rebalance", s.rebalance_delay, ""),
                                    ("lifecycle", s.lifecycle_delay, "Terminated")):
            if delay is not None:
                self.notices[kind] = (now + delay, action, now + delay + s.lead_seconds)
        if s.scheduled:
            self.notices["scheduled"] = (now, "system-reboot", now + 3600 * 24)

    def interrupt(self, kind: str, action: Optional[str], lead: float) -> dict:
        now = time.time()
        if kind == "spot":
            action = action or self.settings.spot_action
            if action not in SPOT_ACTIONS:
                raise ValueError(f"action must be one of {', '.join(SPOT_ACTIONS)}")
        elif kind == "lifecycle":
            action = "Terminated"
        elif kind == "scheduled":
            action = action or "system-reboot"
        else:
            action = ""
        self.notices[kind] = (now, action, now + lead)
        return {"kind": kind, "action": action, "time": iso(now + lead), "visible_from": iso(now)}

    def override(self, path: str, status: int = 200, body: str = "", delay: float = 0.0, mode: str = "answer",
                 clear: bool = False) -> dict:
        if not isinstance(path, str) or not path.startswith("/latest/"):
            raise ValueError("path must start with /latest/")
        if clear:
            self.overrides.pop(path, None)
            return {"path": path, "cleared": True}
        if mode not in ("answer", "drop") or not 100 <= int(status) <= 599 or float(delay) < 0:
            raise ValueError("mode must be answer or drop, status 100-599, delay 0 or more")
        self.overrides[path] = {"status": int(status), "body": str(body), "delay": float(delay), "mode": mode}
        return {"path": path, **self.overrides[path]}

    def active(self, kind: str) -> Optional[tuple[float, str, float]]:
        notice = self.notices.get(kind)
        if notice and time.time() >= notice[0]:
            return notice
        return None


class _Handler(BaseHTTPRequestHandler):
    server_version = "EC2ws"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: without this, Nagle + the client's delayed ACK add ~40 ms
    # to every kept-alive request, which would dominate the agent's measured latency.
    disable_nagle_algorithm = True

    @property
    def state(self) -> _State:
        return self.server.state  # type: ignore[attr-defined]

    def log_message(self, format, *args):  # noqa: A002 - quiet unless asked
        if getattr(self.server, "verbose", False):
            super().log_message(format, *args)

    # --- responses ---------------------------------------------------------------------------

    def _send(self, status: int, body: str = "", content_type: str = "text/plain") -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _read_json(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        return json.loads(raw) if raw.strip() else {}

    def _outage(self) -> bool:
        """True when this request must fail (the control API is never affected)."""
        st = self.state
        with st.lock:
            if st.outage_left <= 0:
                return False
            st.outage_left -= 1
            mode = st.outage_mode
            st.counters["dropped" if mode == "drop" else "errors"] += 1
        if mode == "drop":
            self.close_connection = True  # no response at all: the client sees a connection error
        else:
            self._send(500, "Internal Server Error")
        return True

    # --- verbs -------------------------------------------------------------------------------

    def do_PUT(self):  # noqa: N802
        if self.path.startswith("/spotkit/"):
            return self._send(405, "use POST")
        with self.state.lock:
            self.state.counters["requests"] += 1
        if self._outage():
            return
        if self.path != "/latest/api/token":
            return self._send(405, "Method Not Allowed")
        if not self.state.settings.token_api:
            return self._send(404, "Not Found")
        if self.headers.get("X-Forwarded-For"):
            return self._send(403, "Forbidden")
        try:
            ttl = int(self.headers.get(TTL_HEADER, ""))
        except ValueError:
            return self._send(400, "Bad Request")
        if not 1 <= ttl <= MAX_TOKEN_TTL:
            return self._send(400, "Bad Request")
        token = secrets.token_urlsafe(32)
        with self.state.lock:
            self.state.tokens[token] = self.state.token_clock() + ttl
            self.state.counters["token_puts"] += 1
        self.send_response(200)
        self.send_header(TTL_HEADER, str(ttl))
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(token)))
        self.end_headers()
        self.wfile.write(token.encode())

    def do_POST(self):  # noqa: N802
        if not self.path.startswith("/spotkit/"):
            return self._send(405, "Method Not Allowed")
        st = self.state
        try:
            body = self._read_json()
        except ValueError:
            return self._send(400, json.dumps({"error": "body must be JSON"}), "application/json")
        with st.lock:
            if self.path == "/spotkit/interrupt":
                kind = body.get("kind", "spot")
                if kind not in NOTICE_KINDS:
                    return self._send(400, json.dumps({"error": f"kind must be one of {', '.join(NOTICE_KINDS)}"}),
                                      "application/json")
                try:
                    out = st.interrupt(kind, body.get("action"), float(body.get("lead_seconds",
                                                                                st.settings.lead_seconds)))
                except ValueError as exc:
                    return self._send(400, json.dumps({"error": str(exc)}), "application/json")
                return self._send(200, json.dumps(out), "application/json")
            if self.path == "/spotkit/outage":
                st.outage_left = int(body.get("requests", 1))
                st.outage_mode = body.get("mode", "drop")
                return self._send(200, json.dumps({"requests": st.outage_left, "mode": st.outage_mode}),
                                  "application/json")
            if self.path == "/spotkit/override":
                try:
                    out = st.override(**body)
                except (TypeError, ValueError) as exc:
                    return self._send(400, json.dumps({"error": str(exc)}), "application/json")
                return self._send(200, json.dumps(out), "application/json")
            if self.path == "/spotkit/reset":
                st.reset()
                return self._send(200, json.dumps({"reset": True}), "application/json")
        return self._send(404, json.dumps({"error": "unknown control path"}), "application/json")

    def do_GET(self):  # noqa: N802
        st = self.state
        if self.path == "/spotkit/state":
            with st.lock:
                body = {"counters": dict(st.counters), "tokens": len(st.tokens),
                        "notices": {k: {"visible_from": iso(v[0]), "action": v[1], "time": iso(v[2])}
                                    for k, v in st.notices.items()}}
            return self._send(200, json.dumps(body), "application/json")
        with st.lock:
            st.counters["requests"] += 1
        if self._outage():
            return
        if not self._authorized():
            with st.lock:
                st.counters["unauthorized"] += 1
            return self._send(401, "Unauthorized")
        path = self.path.split("?", 1)[0]
        with st.lock:
            override = st.overrides.get(path)
        if override is not None:
            if override["delay"]:
                time.sleep(override["delay"])
            if override["mode"] == "drop":
                self.close_connection = True
                return
            return self._send(override["status"], override["body"],
                              "application/json" if override["body"].startswith(("{", "[")) else "text/plain")
        body = self._metadata(path)
        if body is None:
            return self._send(404, "Not Found")
        ctype = "application/json" if body.startswith(("{", "[")) else "text/plain"
        return self._send(200, body, ctype)

    # --- metadata ----------------------------------------------------------------------------

    def _authorized(self) -> bool:
        token = self.headers.get(TOKEN_HEADER)
        st = self.state
        if token is None:
            return not st.settings.imdsv2_required
        with st.lock:
            expires = st.tokens.get(token)
            return expires is not None and st.token_clock() < expires

    def _metadata(self, path: str) -> Optional[str]:
        st = self.state
        s = st.settings
        md = "/latest/meta-data/"
        static = {
            md + "instance-id": s.instance_id,
            md + "instance-type": s.instance_type,
            md + "ami-id": s.ami_id,
            md + "local-ipv4": s.local_ipv4,
            md + "placement/availability-zone": s.availability_zone,
            md + "placement/region": s.region,
            md + "placement/": "availability-zone\nregion",
            md + "tags/instance": "\n".join(s.tags),
            md + "tags/instance/": "\n".join(s.tags),
            md: "ami-id\nautoscaling/\nevents/\ninstance-id\ninstance-type\nlocal-ipv4\nplacement/\nspot/\ntags/",
        }
        if path in static:
            return static[path]
        if path.startswith(md + "tags/instance/"):
            return s.tags.get(path[len(md + "tags/instance/"):])
        with st.lock:
            spot, rebalance = st.active("spot"), st.active("rebalance")
            lifecycle, scheduled = st.active("lifecycle"), st.active("scheduled")
        if path == md + "spot/instance-action":
            return json.dumps({"action": spot[1], "time": iso(spot[2])}) if spot else None
        if path == md + "spot/termination-time":
            return iso(spot[2]) if spot and spot[1] == "terminate" else None
        if path == md + "events/recommendations/rebalance":
            return json.dumps({"noticeTime": iso(rebalance[0])}) if rebalance else None
        if path == md + "autoscaling/target-lifecycle-state":
            return "Terminated" if lifecycle else "InService"
        if path == md + "events/maintenance/scheduled":
            if not scheduled:
                return "[]"
            return json.dumps([{
                "NotBefore": maintenance_time(scheduled[2]),
                "NotAfter": maintenance_time(scheduled[2] + 7 * 86400),
                "Code": scheduled[1],
                "Description": f"scheduled {scheduled[1]} (spotkit imds-mock)",
                "EventId": "instance-event-0d59937288b749b32",
                "State": "active",
            }])
        return None


class ImdsEmulator(EmulatorServer):
    """The emulator on a loopback port, in a background thread. Use as a context manager or start()/stop()."""

    name = "imds-emulator"

    def __init__(self, settings: Optional[EmulatorSettings] = None, host: str = "127.0.0.1", port: int = 0,
                 verbose: bool = False, token_clock: Callable[[], float] = time.monotonic):
        self.settings = settings or EmulatorSettings()
        super().__init__(_Handler, _State(self.settings, token_clock), host, port, verbose)

    # in-process shortcuts for the control API
    def interrupt(self, kind: str = "spot", action: Optional[str] = None, lead_seconds: Optional[float] = None) -> dict:
        with self.state.lock:
            return self.state.interrupt(kind, action, self.settings.lead_seconds if lead_seconds is None
                                        else lead_seconds)

    def reset(self) -> None:
        with self.state.lock:
            self.state.reset()

    def override(self, path: str, body: str = "", status: int = 200, delay: float = 0.0, mode: str = "answer",
                 clear: bool = False) -> dict:
        """Make ``path`` answer ``status``/``body`` (after ``delay`` s), or drop the connection (``mode="drop"``)."""
        with self.state.lock:
            return self.state.override(path, status=status, body=body, delay=delay, mode=mode, clear=clear)

    def counters(self) -> dict:
        with self.state.lock:
            return dict(self.state.counters)
