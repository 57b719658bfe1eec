"""Acting on a notice: run a hook under a deadline, then signal the workload (like a preStop hook)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from typing import Mapping, Optional

OUTPUT_TAIL_CHARS = 2000


@dataclass(frozen=True)
class HookResult:
    command: str
    started_at: float  # epoch seconds
    finished_at: float
    returncode: Optional[int]
    killed: bool  # ran past its deadline and was killed
    output_tail: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.killed


def run_hook(command: str, env: Mapping[str, str], deadline: float, *, kill_grace: float = 1.0,
             shell: str = "/bin/sh") -> HookResult:
    """Run ``command`` with ``shell -c`` in its own process group until it exits or ``deadline`` (epoch s).

    Past the deadline the whole group gets SIGTERM, then SIGKILL after ``kill_grace`` seconds. Output
    (stdout and stderr) is captured; its tail goes into the result for the log.
    """
    started = time.time()
    proc = subprocess.Popen([shell, "-c", command], env={**os.environ, **env}, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    killed = False
    try:
        out, _ = proc.communicate(timeout=max(0.0, deadline - time.time()))
    except subprocess.TimeoutExpired:
        killed = True
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=kill_grace)
        except subprocess.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
    text = (out or b"").decode("utf-8", "replace")
    return HookResult(command, started, time.time(), proc.returncode, killed, text[-OUTPUT_TAIL_CHARS:])


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


@dataclass(frozen=True)
class SignalResult:
    target: str  # "pgid 1234", "pidfile /run/x.pid -> pgid 1234", or "none"
    pgid: Optional[int]
    signal: str
    sent_at: Optional[float]
    error: Optional[str] = None
    dry_run: bool = False


def signal_workload(*, pgid: Optional[int] = None, pidfile: Optional[str] = None, sig: str = "SIGTERM",
                    dry_run: bool = False) -> SignalResult:
    """Send ``sig`` to the workload's process group: ``pgid`` directly, or the group of the pid in ``pidfile``.

    Nothing configured, a missing pidfile or a gone process are reported in the result, not raised.
    """
    signum = getattr(signal, sig)
    target = "none"
    if pgid is None and pidfile:
        target = f"pidfile {pidfile}"
        try:
            with open(pidfile) as fh:
                pid = int(fh.read().strip())
            pgid = os.getpgid(pid)
        except (OSError, ValueError) as exc:
            return SignalResult(target, None, sig, None, error=f"reading the workload pid: {type(exc).__name__}: {exc}")
        target += f" -> pgid {pgid}"
    elif pgid is not None:
        target = f"pgid {pgid}"
    if pgid is None:
        return SignalResult(target, None, sig, None, error="no workload configured (give a process group or pidfile)")
    if dry_run:
        return SignalResult(target, pgid, sig, None, dry_run=True)
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError) as exc:
        return SignalResult(target, pgid, sig, None, error=f"{type(exc).__name__}: {exc}")
    return SignalResult(target, pgid, sig, time.time())


def group_alive(pgid: int) -> bool:
    """True while a live (not zombie) process is in process group ``pgid`` (Linux /proc; else kill 0)."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        try:
            os.killpg(pgid, 0)
            return True
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def wait_for_group_exit(pgid: int, deadline: float, poll: float = 0.1) -> Optional[float]:
    """Wait until process group ``pgid`` has no live process or ``deadline`` (epoch s) passes.

    Returns when it was seen gone (epoch seconds), or None if it was still running at the deadline.
    """
    while True:
        if not group_alive(pgid):
            return time.time()
        if time.time() >= deadline:
            return None
        time.sleep(min(poll, max(0.0, deadline - time.time())))
