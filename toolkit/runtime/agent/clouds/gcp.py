"""GCP: preemption and host maintenance from the metadata server.

- ``instance/preempted`` is ``FALSE`` until Compute Engine preempts the VM (spot or preemptible), then
  ``TRUE``, about 30 s before the VM stops. The monitor reads it with a hanging GET
  (``?wait_for_change=true&last_etag=...&timeout_sec=N``): no polling cost, and the answer comes the
  moment the value changes. The first read is a plain GET (a notice already present at start is seen at
  once, and its ETag anchors the wait). When the hanging GET is refused or breaks (a proxy that does not
  support it), the monitor falls back to plain polling for ``retry_wait_after`` seconds, then tries again.
- ``instance/maintenance-event`` is ``NONE``, ``MIGRATE_ON_HOST_MAINTENANCE`` (live migration: logged,
  optional hook) or ``TERMINATE_ON_HOST_MAINTENANCE`` (the VM stops: drained like a preemption).

Notice ids carry the VM's numeric ``instance/id`` (``read_identity``). A GCP notice is always about the
VM that reads it (each VM has its own metadata values), so no event here names other machines.

GCP gives no time with either value: the notice time is the first detection plus the platform's window
(``notice_seconds``, 30 s by default, ``spotkit.runtime.notice.STANDARD_NOTICE_SECONDS``), kept stable across
polls so the notice keeps one id. Standard library only, Python 3.9.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Callable, Optional
from urllib.parse import quote

from spotkit.runtime.agent.imds import ImdsError
from spotkit.runtime.agent.clouds.client import make_notice, ok_body
from spotkit.runtime.agent.notices import MAINTENANCE, SPOT, Notice
from spotkit.runtime.notice import STANDARD_NOTICE_SECONDS, spot_key

HEADER = ("Metadata-Flavor", "Google")
PREEMPTED_PATH = "/computeMetadata/v1/instance/preempted"
MAINTENANCE_EVENT_PATH = "/computeMetadata/v1/instance/maintenance-event"
TERMINATE_ON_MAINTENANCE = "TERMINATE_ON_HOST_MAINTENANCE"
MIGRATE_ON_MAINTENANCE = "MIGRATE_ON_HOST_MAINTENANCE"
NOTICE_SECONDS = STANDARD_NOTICE_SECONDS["gcp"]
ID_PATH = "/computeMetadata/v1/instance/id"
NAME_PATH = "/computeMetadata/v1/instance/name"


def read_identity(client) -> tuple:
    """(instance id, instance name) from the metadata server; ImdsError when either cannot be read."""
    found = []
    for path in (ID_PATH, NAME_PATH):
        resp = client.get(path)
        if resp.status != 200:
            raise ImdsError(f"reading this VM's identity: GET {path}: HTTP {resp.status}: {resp.body[:200]}")
        found.append(resp.body.strip())
    ident, name = found
    if not ident.isdigit() or len(ident) > 24:
        raise ImdsError(f"reading this VM's identity: GET {ID_PATH} gave {ident[:40]!r}, not a numeric instance id")
    return ident, name


def _noop(event: str, **fields) -> None:
    return None


class _FirstSeen:
    """The detection time of a value, kept while the value lasts (so the notice time and id stay put)."""

    def __init__(self) -> None:
        self.value: Optional[str] = None
        self.at: Optional[datetime] = None

    def mark(self, value: str, now: datetime) -> datetime:
        if value != self.value or self.at is None:
            self.value, self.at = value, now
        return self.at


class GcpPreemptionMonitor:
    """``instance/preempted`` through a hanging GET, falling back to polling."""

    kind, path, context = SPOT, PREEMPTED_PATH, "checking for a GCP preemption"

    def __init__(self, client, *, notice_seconds: float = NOTICE_SECONDS, wait_seconds: float = 10.0,
                 wait_for_change: bool = True, retry_wait_after: float = 300.0,
                 log: Callable[..., object] = _noop, clock: Callable[[], float] = time.monotonic):
        self.client = client
        self.notice_seconds = notice_seconds
        self.wait_seconds = max(1, int(round(wait_seconds)))
        self.wait_for_change = wait_for_change
        self.retry_wait_after = retry_wait_after
        self.log = log
        self._clock = clock
        self._etag: Optional[str] = None
        self._polling_until = 0.0
        self._seen = _FirstSeen()
        self.hanging_gets = 0
        self.plain_gets = 0

    @property
    def mode(self) -> str:
        waiting = self.wait_for_change and self._clock() >= self._polling_until
        return "wait-for-change" if waiting else "polling"

    def _fallback(self, reason: str) -> None:
        self._polling_until = self._clock() + self.retry_wait_after
        self._etag = None
        self.log("wait-for-change-fallback", monitor=self.kind, reason=reason, polling_for=self.retry_wait_after)

    def fetch(self) -> str:
        """The value of ``instance/preempted`` (a hanging GET once the first plain GET gave an ETag)."""
        if self._etag is not None and self.mode == "wait-for-change":
            path = f"{self.path}?wait_for_change=true&last_etag={quote(self._etag)}&timeout_sec={self.wait_seconds}"
            self.hanging_gets += 1
            try:
                resp = self.client.get(path, timeout=self.wait_seconds + 5)
            except ImdsError as exc:
                self._fallback(str(exc))
                raise
            if resp.status == 200:
                self._etag = resp.headers.get("etag")
                return resp.body
            self._fallback(f"GET {path}: HTTP {resp.status}: {resp.body[:200]}")
        self.plain_gets += 1
        resp = self.client.get(self.path)
        body = ok_body(resp, self.path)
        if self.mode == "wait-for-change":
            self._etag = resp.headers.get("etag")
        return body

    def clear(self) -> None:
        self._seen = _FirstSeen()

    def parse(self, body: str, now: datetime) -> list[Notice]:
        value = body.strip().upper()
        if value != "TRUE":
            self.clear()
            return []
        at = self._seen.mark(value, now)
        when = at + timedelta(seconds=self.notice_seconds)
        return [make_notice(SPOT, when, "preempted", self.path,
                            {"cloud": "gcp", "detected": at.strftime("%Y-%m-%dT%H:%M:%SZ")},
                            key=spot_key("preempted", when))]


class GcpMaintenanceMonitor:
    """``instance/maintenance-event``: a terminating host maintenance drains, a live migration is advisory."""

    kind, path, context = MAINTENANCE, MAINTENANCE_EVENT_PATH, "checking for a GCP host maintenance event"

    def __init__(self, client, *, notice_seconds: float = NOTICE_SECONDS):
        self.client = client
        self.notice_seconds = notice_seconds
        self._seen = _FirstSeen()

    def fetch(self) -> str:
        return ok_body(self.client.get(self.path), self.path)

    def clear(self) -> None:
        self._seen = _FirstSeen()

    def parse(self, body: str, now: datetime) -> list[Notice]:
        value = body.strip().upper()
        if value not in (TERMINATE_ON_MAINTENANCE, MIGRATE_ON_MAINTENANCE):
            self.clear()
            return []
        at = self._seen.mark(value, now)
        detail = {"cloud": "gcp", "detected": at.strftime("%Y-%m-%dT%H:%M:%SZ")}
        if value == MIGRATE_ON_MAINTENANCE:
            detail["advisory"] = True  # the VM lives on: logged, optional hook, no drain
        when = at + timedelta(seconds=self.notice_seconds)
        return [make_notice(MAINTENANCE, when, value, self.path, detail, key=spot_key(value, when))]
