"""Whom a pidfile may aim the agent at (toolkit/runtime/agent/runner.py): only the pidfile owner's processes (any
process when root owns it), and never through a pidfile whose time is in the future.

The agent runs as root; these tests run as root too and use uid 65534 (nobody) as "another user":
files are chown'ed to it and a target process runs as it."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from spotkit.runtime.agent.runner import PIDFILE_CLOCK_SLACK, signal_workload, workload_from_pidfile, WorkloadRefused

NOBODY = 65534
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: files and processes of another uid")


def sleeper(user: int | None = None) -> subprocess.Popen:
    """A process in a session of its own (its own group), as ``user`` when given."""
    return subprocess.Popen(["sleep", "120"], start_new_session=True, user=user)


@pytest.fixture()
def procs():
    started: list[subprocess.Popen] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
        p.wait()


def write_pidfile(path, pid: int, owner: int = 0) -> str:
    path.write_text(f"{pid}\n")
    os.chown(path, owner, owner)
    return str(path)


def test_a_pidfile_of_another_user_naming_a_root_process_is_refused(tmp_path, procs):
    # GIVEN a root process and a pidfile owned by nobody that names it (anyone who can write it aims the agent)
    victim = sleeper()
    procs.append(victim)
    pidfile = write_pidfile(tmp_path / "workload.pid", victim.pid, owner=NOBODY)
    # WHEN the agent signals the workload of that pidfile
    result = signal_workload(pidfile=pidfile)
    # THEN it refuses, saying why, and the root process lives on
    assert result.sent_at is None and result.pgid is None
    assert result.error == (f"refused: {pidfile} is owned by uid {NOBODY} but process {victim.pid} runs as uid 0: "
                            "a pidfile may only name its owner's processes (or be root's)")
    assert victim.poll() is None


def test_a_pidfile_naming_its_owners_own_process_is_signaled(tmp_path, procs):
    # GIVEN a workload running as nobody and nobody's pidfile naming it
    workload = sleeper(user=NOBODY)
    procs.append(workload)
    pidfile = write_pidfile(tmp_path / "workload.pid", workload.pid, owner=NOBODY)
    # WHEN signaled THEN its group gets SIGTERM
    result = signal_workload(pidfile=pidfile)
    assert result.error is None and result.pgid == workload.pid
    assert workload.wait(timeout=30) == -signal.SIGTERM


def test_a_root_pidfile_may_name_another_users_process(tmp_path, procs):
    workload = sleeper(user=NOBODY)
    procs.append(workload)
    pidfile = write_pidfile(tmp_path / "workload.pid", workload.pid, owner=0)
    assert workload_from_pidfile(pidfile) == (workload.pid, workload.pid)


def test_a_pidfile_time_in_the_future_is_refused_not_taken_as_fresh(tmp_path, procs):
    # GIVEN a root pidfile naming a live workload, with a time an hour ahead of the clock
    workload = sleeper()
    procs.append(workload)
    pidfile = write_pidfile(tmp_path / "workload.pid", workload.pid)
    ahead = time.time() + 3600
    os.utime(pidfile, (ahead, ahead))
    # WHEN the agent signals through it THEN it refuses and says the time is suspicious; the workload lives on
    result = signal_workload(pidfile=pidfile)
    assert result.error.startswith(f"refused: {pidfile} was written ")
    assert result.error.endswith(" s in the future: a pidfile time ahead of the clock is suspicious, not fresh "
                                 "(fix the clock or rewrite the pidfile)")
    assert workload.poll() is None


def test_the_future_check_uses_the_given_clock_and_its_slack(tmp_path, procs):
    workload = sleeper()
    procs.append(workload)
    pidfile = write_pidfile(tmp_path / "workload.pid", workload.pid)
    written = os.stat(pidfile).st_mtime
    # within the slack: accepted; past it: refused
    assert workload_from_pidfile(pidfile, now=written - PIDFILE_CLOCK_SLACK + 0.5)[0] == workload.pid
    with pytest.raises(WorkloadRefused, match="in the future"):
        workload_from_pidfile(pidfile, now=written - PIDFILE_CLOCK_SLACK - 10)
