"""Acting on a notice: run a hook under a deadline, then signal the workload (like a preStop hook).

Two promises, whatever the hook and the pidfile hold:

- the hook runs in its own session; at its deadline every process of that session gets SIGTERM, then
  SIGKILL, and its output goes to a temporary file, never a pipe: a child that detaches (``setsid
  sleep 40 &``) or keeps the output open cannot hold the agent past the deadline;
- only the workload it was given is signaled: never a pid or process group of 1 or less (0 and -1 mean
  "my group" and "everyone" to kill(2)), never the agent's own process group, never a process that
  started after its pidfile was written (the pid was reused by another program), never a process of
  another user than the pidfile's owner (a pidfile anyone could write must not aim the agent, which runs
  as root, at root's processes; a pidfile owned by root may name any process), and never through a
  pidfile whose time is in the future (a clock that cannot be trusted, or a file made to look fresh).
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Mapping, Optional

OUTPUT_TAIL_CHARS = 2000
# /proc/stat's btime is whole seconds and the clock may be slewed: a pidfile counts as older than its
# process only when the process started more than this many seconds after the file was written.
PIDFILE_CLOCK_SLACK = 2.0


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
    """Run ``command`` with ``shell -c`` in a new session until it exits or ``deadline`` (epoch s).

    Past the deadline the whole session gets SIGTERM, then SIGKILL after ``kill_grace`` seconds. When the
    hook exits in time, what it left running in its session is killed at the deadline by a timer (the
    agent does not wait for it). Output (stdout and stderr) goes to an unlinked temporary file; its tail
    goes into the result for the log.
    """
    started = time.time()
    killed = False
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen([shell, "-c", command], env={**os.environ, **env}, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            proc.wait(timeout=max(0.0, deadline - time.time()))
        except subprocess.TimeoutExpired:
            killed = True
            kill_session(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=kill_grace)
            except subprocess.TimeoutExpired:
                pass
            kill_session(proc.pid, signal.SIGKILL)
            proc.wait()
        else:
            _kill_session_at(proc.pid, deadline)
        out.seek(0, os.SEEK_END)
        size = out.tell()
        out.seek(max(0, size - OUTPUT_TAIL_CHARS * 4))
        text = out.read().decode("utf-8", "replace")
    return HookResult(command, started, time.time(), proc.returncode, killed, text[-OUTPUT_TAIL_CHARS:])


def session_members(sid: int) -> list[int]:
    """Live pids whose session is ``sid`` (Linux /proc)."""
    found = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return found
    for entry in entries:
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields and fields[0] != "Z" and int(fields[3]) == sid:
                found.append(int(entry))
    return found


def kill_session(sid: int, sig: int) -> None:
    """Send ``sig`` to the process group ``sid`` and to every process of session ``sid``
    (children that moved to a group of their own but stayed in the session)."""
    if sid <= 1 or sid == os.getpgrp():
        return
    try:
        os.killpg(sid, sig)
    except (ProcessLookupError, PermissionError):
        pass
    for pid in session_members(sid):
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


# Hook sessions with processes left behind, waiting for their deadline: sid -> (timer, deadline).
# ``end_pending_sessions`` ends them when the agent stops, so no hook child outlives the agent (a process
# that left the session with setsid is out of reach here: systemd's control group ends it with the unit).
_PENDING: dict = {}
_PENDING_LOCK = threading.Lock()


def _kill_session_at(sid: int, deadline: float) -> None:
    if not session_members(sid):
        return

    def fire() -> None:
        with _PENDING_LOCK:
            _PENDING.pop(sid, None)
        kill_session(sid, signal.SIGKILL)

    timer = threading.Timer(max(0.0, deadline - time.time()), fire)
    timer.daemon = True
    with _PENDING_LOCK:
        _PENDING[sid] = (timer, deadline)
    timer.start()


def end_pending_sessions(stopped: Optional[threading.Event] = None, wait: bool = False) -> list:
    """End every hook session still waiting for its deadline; returns the ids of those killed (for the log).

    ``wait``: first let each run until its deadline (the agent returning after one drain with ``once``:
    the hook's background work keeps its time), cut short when ``stopped`` is set (a stop request).
    Without ``wait`` they are killed now. Deadlines are bounded by the notice windows, so the wait is too.
    """
    with _PENDING_LOCK:
        pending = list(_PENDING.items())
    killed = []
    for sid, (timer, deadline) in pending:
        while wait and time.time() < deadline and session_members(sid):
            if stopped is not None and stopped.is_set():
                break
            time.sleep(min(0.1, max(0.0, deadline - time.time())))
        timer.cancel()
        with _PENDING_LOCK:
            _PENDING.pop(sid, None)
        if session_members(sid):
            kill_session(sid, signal.SIGKILL)
            killed.append(sid)
    return killed


# --- the workload ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class SignalResult:
    target: str  # "pgid 1234", "pidfile /run/x.pid -> pgid 1234", or "none"
    pgid: Optional[int]
    signal: str
    sent_at: Optional[float]
    error: Optional[str] = None
    dry_run: bool = False


class WorkloadRefused(ValueError):
    """The pid or process group is not one the agent may signal; the message says why."""


def _stat_fields(pid: int) -> Optional[list[str]]:
    """Fields of /proc/<pid>/stat after the command name: [state, ppid, pgrp, session, ...]; None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def process_start_time(pid: int) -> Optional[float]:
    """When ``pid`` started (epoch seconds, from /proc/<pid>/stat and /proc/stat's btime); None if unknown."""
    fields = _stat_fields(pid)
    if not fields or len(fields) < 20:
        return None
    try:
        with open("/proc/stat") as fh:
            btime = next(int(line.split()[1]) for line in fh if line.startswith("btime "))
        ticks = os.sysconf("SC_CLK_TCK")
        return btime + int(fields[19]) / ticks
    except (OSError, StopIteration, ValueError):
        return None


def check_pgid(pgid: int) -> int:
    """``pgid`` if the agent may signal it; raises WorkloadRefused otherwise."""
    if isinstance(pgid, bool) or not isinstance(pgid, int):
        raise WorkloadRefused(f"process group {pgid!r} is not a number")
    if pgid <= 1:
        raise WorkloadRefused(f"process group {pgid} is not a workload (0 means the agent's own group, 1 is init, "
                              "negative numbers are not process groups)")
    if pgid == os.getpgrp():
        raise WorkloadRefused(f"process group {pgid} is the agent's own: run the workload in a group of its own "
                              "(setsid, or systemd's own unit)")
    return pgid


def process_uid(pid: int) -> Optional[int]:
    """The real uid of ``pid`` (Linux /proc/<pid>/status); None when it cannot be read."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("Uid:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def workload_from_pidfile(pidfile: str, *, now: Optional[float] = None) -> tuple[int, int]:
    """(pid, pgid) of the workload named in ``pidfile``, or WorkloadRefused/OSError saying why not.

    Refused: a pid of 1 or less, a pidfile written before its process started (pid reused), a pidfile
    whose time is more than ``PIDFILE_CLOCK_SLACK`` seconds after ``now`` (default: the clock), and a
    process whose uid is not the pidfile owner's unless root owns the file.
    """
    with open(pidfile) as fh:
        text = fh.read().strip()
        st = os.fstat(fh.fileno())
    written, owner = st.st_mtime, st.st_uid
    now = time.time() if now is None else now
    if written > now + PIDFILE_CLOCK_SLACK:
        raise WorkloadRefused(f"{pidfile} was written {written - now:.0f} s in the future: a pidfile time ahead of "
                              "the clock is suspicious, not fresh (fix the clock or rewrite the pidfile)")
    try:
        pid = int(text)
    except ValueError:
        raise WorkloadRefused(f"{pidfile} holds {text[:40]!r}, not a pid") from None
    if pid <= 1:
        raise WorkloadRefused(f"{pidfile} holds pid {pid}: not a workload (0 and -1 mean groups, 1 is init)")
    started = process_start_time(pid)
    if started is None and not os.path.exists(f"/proc/{pid}"):
        raise ProcessLookupError(f"no process {pid} (from {pidfile})")
    if started is not None and started > written + PIDFILE_CLOCK_SLACK:
        raise WorkloadRefused(f"{pidfile} is stale: written {started - written:.0f} s before process {pid} started "
                              "(the pid was reused by another program)")
    if owner != 0:
        uid = process_uid(pid)
        if uid is None:
            raise WorkloadRefused(f"{pidfile} is owned by uid {owner}, and the owner of process {pid} cannot be read: "
                                  "not signaled")
        if uid != owner:
            raise WorkloadRefused(f"{pidfile} is owned by uid {owner} but process {pid} runs as uid {uid}: a pidfile "
                                  "may only name its owner's processes (or be root's)")
    pgid = os.getpgid(pid)
    return pid, check_pgid(pgid)


def signal_workload(*, pgid: Optional[int] = None, pidfile: Optional[str] = None, sig: str = "SIGTERM",
                    dry_run: bool = False) -> SignalResult:
    """Send ``sig`` to the workload's process group: ``pgid`` directly, or the group of the pid in ``pidfile``.

    Nothing configured, a missing or stale pidfile, a refused group or a gone process are reported in
    the result, not raised.
    """
    signum = getattr(signal, sig)
    target = "none"
    try:
        if pgid is None and pidfile:
            target = f"pidfile {pidfile}"
            _, pgid = workload_from_pidfile(pidfile)
            target += f" -> pgid {pgid}"
        elif pgid is not None:
            target = f"pgid {pgid}"
            check_pgid(pgid)
    except WorkloadRefused as exc:
        return SignalResult(target, None, sig, None, error=f"refused: {exc}")
    except OSError as exc:
        return SignalResult(target, None, sig, None, error=f"reading the workload pid: {type(exc).__name__}: {exc}")
    if pgid is None:
        return SignalResult(target, None, sig, None, error="no workload configured (give a process group or pidfile)")
    if dry_run:
        return SignalResult(target, pgid, sig, None, dry_run=True)
    try:
        os.killpg(pgid, signum)
    except OSError as exc:
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
        fields = _stat_fields(int(entry))
        if fields and int(fields[2]) == pgid and fields[0] != "Z":
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
