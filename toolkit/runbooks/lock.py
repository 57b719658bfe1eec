"""One runbook run per group at a time: a lease tag on the Auto Scaling group and a file lock on the journal.

Two runs of ``recover volumes`` on one group would each snapshot and copy the same volumes. A run
therefore holds, for as long as it mutates anything:

- a **file lock** (``fcntl.flock``) on ``<journal>.lock`` next to its local journal, so two runs on
  one machine never write one journal at once (the kernel drops it when the process dies);
- a **lease** on the group: the tag ``spotkit:lock`` (``spotkit.runtime.notice.TAG_LOCK``, not propagated to
  instances) whose value names the holder and when the lease expires::

      owner=host:pid:nonce runbook=volumes expires=2026-11-29T19:30:00Z

  The Auto Scaling API has no conditional tag write, so the lease is taken as far as it allows: read,
  write only when free (absent, expired, ours, or held by a dead process of this host), wait
  ``settle`` seconds, read again, and hold it only if the value read back is ours. Before every call
  that creates something (snapshot, volume, tags) the run checks that the lease is still its own, before
  an attachment at most every 30 s (EC2 decides attachments atomically), and renews it when half of its
  time is gone; a run that finds someone else's lease stops with ``LockLost`` before its next change.

A second run waits up to ``wait`` seconds for the lease, then stops with ``GroupLocked``, which names
the holder, when its lease expires, and what to do. A stale lease (its holder killed) expires at its
``expires`` time, or at once when its holder was a process of this host that no longer exists.
Releasing removes the tag only when it is still ours. Nothing else is ever removed.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import os
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from spotkit.errors import ToolkitError
from spotkit.runtime.notice import TAG_LOCK, format_time, try_parse_time
from spotkit.processes import pid_alive

DEFAULT_TTL_SECONDS = 1800.0  # longer than the longest single waiter of a run (120 x 5 s)
DEFAULT_SETTLE_SECONDS = 1.0
DEFAULT_POLL_SECONDS = 2.0
LEASE_CHECK_SECONDS = 30.0  # between lease checks before calls that create nothing (attachments)


class GroupLocked(ToolkitError):
    """Another run holds the group (or the journal) and did not let go within the wait."""


class LockLost(ToolkitError):
    """The run's lease was taken over by another run; it stopped before its next change."""


def new_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class Lease:
    owner: str
    runbook: str
    expires: _dt.datetime | None

    @classmethod
    def parse(cls, value: str) -> "Lease":
        fields = dict(part.split("=", 1) for part in value.split() if "=" in part)
        return cls(fields.get("owner", value), fields.get("runbook", "?"), try_parse_time(fields.get("expires")))

    def render(self) -> str:
        expires = format_time(self.expires) if self.expires else "never"
        return f"owner={self.owner} runbook={self.runbook} expires={expires}"

    def expired(self, now: _dt.datetime) -> bool:
        return self.expires is None or self.expires <= now

    def holder_is_dead(self) -> bool:
        """The holder was a process of this host that no longer exists (killed): its lease is stale now."""
        host, _, rest = self.owner.partition(":")
        pid = rest.split(":", 1)[0]
        return host == socket.gethostname() and pid.isdigit() and not pid_alive(int(pid))


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


class JournalFileLock:
    """``fcntl.flock`` on ``<journal>.lock``; the file says who holds it (pid, host, since)."""

    def __init__(self, journal_path: Path):
        self.path = Path(str(journal_path) + ".lock")
        self._fh = None

    def try_acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+", encoding="utf-8")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            return False
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid={os.getpid()} host={socket.gethostname()} since={format_time(_now())}\n")
        fh.flush()
        self._fh = fh
        return True

    def holder(self) -> str:
        try:
            return self.path.read_text(encoding="utf-8").strip() or "unknown"
        except OSError:
            return "unknown"

    def release(self) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None


class GroupLease:
    """The ``spotkit:lock`` lease of one run on one Auto Scaling group (see the module doc)."""

    def __init__(self, autoscaling, group: str, runbook: str, *, ttl: float = DEFAULT_TTL_SECONDS,
                 settle: float = DEFAULT_SETTLE_SECONDS, owner: str | None = None):
        self.autoscaling, self.group, self.runbook = autoscaling, group, runbook
        self.ttl, self.settle = ttl, settle
        self.owner = owner or new_owner()
        self.held: Lease | None = None
        self.took_over: Lease | None = None

    def read(self) -> Lease | None:
        resp = self.autoscaling.describe_tags(Filters=[{"Name": "auto-scaling-group", "Values": [self.group]},
                                                       {"Name": "key", "Values": [TAG_LOCK]}])
        for tag in resp.get("Tags", []):
            if tag.get("Key") == TAG_LOCK:
                return Lease.parse(tag.get("Value", ""))
        return None

    def _write(self) -> Lease:
        lease = Lease(self.owner, self.runbook, _now() + _dt.timedelta(seconds=self.ttl))
        self.autoscaling.create_or_update_tags(Tags=[{
            "ResourceId": self.group, "ResourceType": "auto-scaling-group", "Key": TAG_LOCK,
            "Value": lease.render(), "PropagateAtLaunch": False}])
        return lease

    def free(self, current: Lease | None) -> bool:
        return (current is None or current.owner == self.owner or current.expired(_now())
                or current.holder_is_dead())

    def try_acquire(self) -> Lease | None:
        """Take the lease if it is free; None when it is held (return the holder's lease)."""
        current = self.read()
        if not self.free(current):
            return current
        mine = self._write()
        if self.settle:
            time.sleep(self.settle)
        after = self.read()
        if after is not None and after.owner == self.owner:
            if current is not None and current.owner != self.owner:
                self.took_over = current
            self.held = mine
            return None
        return after  # another run wrote after us: it holds the lease

    def check(self) -> None:
        """Before a mutating call: the lease must still be ours; renew it when half of its time is gone."""
        if self.held is None:
            return
        current = self.read()
        if current is None or current.owner != self.owner:
            holder = current.owner if current else "nobody (the tag was removed)"
            self.held = None
            raise LockLost(
                f"the lease of this run on group {self.group!r} ({TAG_LOCK}) is now held by {holder}; "
                "stopped before the next change",
                hint=f"let the other run finish, then run 'spotkit recover {self.runbook} --group {self.group}' "
                     "again: it resumes from its journal and creates nothing twice")
        assert self.held.expires is not None
        if (self.held.expires - _now()).total_seconds() < self.ttl / 2:
            self.held = self._write()

    def release(self) -> None:
        if self.held is None:
            return
        self.held = None
        current = self.read()
        if current is not None and current.owner == self.owner:
            self.autoscaling.delete_tags(Tags=[{"ResourceId": self.group, "ResourceType": "auto-scaling-group",
                                                "Key": TAG_LOCK, "Value": current.render()}])


def locked_message(group: str, runbook: str, holder: str, expires: _dt.datetime | None, waited: float) -> GroupLocked:
    until = f", its lease expires at {format_time(expires)}" if expires else ""
    return GroupLocked(
        f"another run holds group {group!r}: {holder}{until} (waited {waited:.0f} s)",
        hint=f"wait for it to finish and run 'spotkit recover {runbook} --group {group}' again (add --lock-wait "
             f"SECONDS to wait longer); if that run was killed on another machine, its lease expires by itself")


class RunLock:
    """File lock, then group lease; waits up to ``wait`` seconds for both, polling every ``poll``."""

    def __init__(self, group: str, runbook: str, journal_path: Path, autoscaling=None, *, wait: float = 0.0,
                 poll: float = DEFAULT_POLL_SECONDS, ttl: float = DEFAULT_TTL_SECONDS,
                 settle: float = DEFAULT_SETTLE_SECONDS, sleep: Callable[[float], None] = time.sleep):
        self.group, self.runbook, self.wait, self.poll, self.sleep = group, runbook, wait, poll, sleep
        self.file = JournalFileLock(journal_path)
        self.lease = GroupLease(autoscaling, group, runbook, ttl=ttl, settle=settle) if autoscaling is not None else None
        self._checked: float | None = None

    def acquire(self) -> None:
        start = time.monotonic()
        while not self.file.try_acquire():
            waited = time.monotonic() - start
            if waited >= self.wait:
                raise locked_message(self.group, self.runbook, f"a run on this machine ({self.file.holder()}, "
                                     f"lock file {self.file.path})", None, waited)
            self.sleep(min(self.poll, max(self.wait - waited, 0.01)))
        if self.lease is None:
            return
        try:
            while True:
                holder = self.lease.try_acquire()
                if holder is None:
                    self._checked = time.monotonic()  # the read-back that took the lease is a check
                    return
                waited = time.monotonic() - start
                if waited >= self.wait:
                    raise locked_message(self.group, self.runbook, f"{holder.owner} ({holder.runbook}, tag {TAG_LOCK} "
                                         f"on the Auto Scaling group)", holder.expires, waited)
                self.sleep(min(self.poll, max(self.wait - waited, 0.01)))
        except BaseException:
            self.file.release()
            raise

    def check(self, force: bool = True) -> None:
        """Before a mutating call: the lease must still be ours. ``force`` False: at most every
        ``LEASE_CHECK_SECONDS`` (the calls in between are attachments, which EC2 decides atomically)."""
        if self.lease is None:
            return
        now = time.monotonic()
        if force or self._checked is None or now - self._checked >= LEASE_CHECK_SECONDS:
            self.lease.check()
            self._checked = now

    def release(self) -> None:
        try:
            if self.lease is not None:
                self.lease.release()
        finally:
            self.file.release()
