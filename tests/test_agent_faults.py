"""Fault tests of the agent (issue 15): a misbehaving metadata service, bystander processes, detached hook
children, notices that come due at once, and the notice identity across interruptions.

Over the wire: the IMDS emulator serves each bad answer on a real path (``ImdsEmulator.override``). No
timed assertions: what happened and in which order, never how long it took.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tests.support.agent_harness import emu  # noqa: F401 - a fixture
from tests.support.agent_harness import events, quiet_log
from spotkit.runtime.agent import Agent, AgentConfig, ImdsClient, JsonLogger, run_until_notice
from spotkit.runtime.agent.notices import LIFECYCLE_PATH, MAINTENANCE_PATH, REBALANCE_PATH, SPOT_PATH

ROOT = Path(__file__).resolve().parents[1]
INSTANCE_ID_PATH = "/latest/meta-data/instance-id"
GROUP_TAG_PATH = "/latest/meta-data/tags/instance/aws:autoscaling:groupName"
FAST = dict(interval=0.05, complete_lifecycle=False)
OTHER_PATHS = [REBALANCE_PATH, LIFECYCLE_PATH, MAINTENANCE_PATH, INSTANCE_ID_PATH]

MALFORMED = [
    '{"action": "terminate", "time": 12345}', '{"action": "terminate", "time": null}', '{"noticeTime": 7}',
    '[{"NotBefore": 5}]', '[5, null, "x", {"State": 3}]', "null", "[]", "{}", '"text"', "12", "true",
    "not json at all", "", "\udcff\udcfe garbage", "[" * 5000 + "]" * 5000, '{"time": {"nested": [1, 2]}}',
    "x" * 300_000,
]


def _agent(emu, tmp_path, **config) -> tuple[Agent, JsonLogger, Path]:
    out = tmp_path / "hook"
    log = quiet_log()
    cfg = {**FAST, "on_notice": f'echo "$SPOTKIT_NOTICE_KIND $SPOTKIT_DEADLINE_EPOCH" >> {out}', **config}
    return Agent(ImdsClient(emu.url), AgentConfig(**cfg), log=log, boot="boot-1"), log, out


def _hook_runs(out: Path) -> list[str]:
    return out.read_text().splitlines() if out.exists() else []


# --- any body, any status, slow or gone: survivable, and never hiding another monitor's notice -----------

@pytest.mark.parametrize("path", OTHER_PATHS)
@pytest.mark.parametrize("body", MALFORMED, ids=lambda b: repr(b[:24]))
def test_malformed_body_next_to_a_valid_spot_notice_still_drains(emu, tmp_path, path, body):
    # GIVEN a valid spot notice and a malformed body on another path
    emu.interrupt("spot", lead_seconds=120)
    emu.override(path, body=body)
    agent, log, out = _agent(emu, tmp_path)
    # WHEN the agent polls a few times
    results = [agent.step() for _ in range(3)]
    # THEN the spot notice ran the hook once, and nothing raised
    assert [r.notice["kind"] for r in results if r] == ["spot-interruption"]
    assert [line.split()[0] for line in _hook_runs(out)] == ["spot-interruption"]


@pytest.mark.parametrize("path", OTHER_PATHS)
@pytest.mark.parametrize("answer", [dict(status=404), dict(status=500), dict(status=401), dict(status=403),
                                    dict(status=301, body="/elsewhere"), dict(status=200, body="ok", delay=1.5),
                                    dict(mode="drop")], ids=lambda a: "-".join(f"{k}{v}" for k, v in a.items()))
def test_bad_status_slow_or_gone_path_next_to_a_valid_spot_notice_still_drains(emu, tmp_path, path, answer):
    emu.interrupt("spot", lead_seconds=120)
    emu.override(path, **answer)
    agent, log, out = _agent(emu, tmp_path)
    results = [agent.step() for _ in range(2)]
    assert [r.notice["kind"] for r in results if r] == ["spot-interruption"]
    assert len(_hook_runs(out)) == 1


@pytest.mark.parametrize("body", ['{"action": "terminate", "time": 12345}', '{"action": "terminate", "time": null}',
                                  '{"action": "terminate"}', "null", "[]", "garbage", "", '{"time": "2026-13-45T99:00:00Z"}'],
                         ids=repr)
def test_unreadable_spot_time_means_now_plus_the_standard_notice_and_the_hook_runs(emu, tmp_path, body):
    # GIVEN a 200 on the spot path whose time cannot be read
    emu.override(SPOT_PATH, body=body)
    agent, log, out = _agent(emu, tmp_path, margin=15)
    before = time.time()
    result = agent.step()
    # THEN it is a spot notice due in the standard 120 s (minus the margin), and the hook ran
    assert result is not None and result.notice["kind"] == "spot-interruption"
    assert "assumed now + 120 s" in result.notice["detail"]["unreadable"]
    [line] = _hook_runs(out)
    deadline = float(line.split()[1])
    assert before + 120 - 15 - 2 <= deadline <= time.time() + 120 - 15 + 1
    # AND the pinned time keeps one id across polls: no second drain
    assert agent.step() is None and len(_hook_runs(out)) == 1


@pytest.mark.parametrize("answer", [dict(status=500), dict(status=401), dict(status=403), dict(status=200, delay=1.5),
                                    dict(mode="drop")], ids=lambda a: "-".join(f"{k}{v}" for k, v in a.items()))
def test_spot_path_faults_are_logged_and_polling_recovers(emu, tmp_path, answer):
    emu.override(SPOT_PATH, **answer)
    agent, log, out = _agent(emu, tmp_path)
    assert agent.step() is None and agent.step() is None
    assert len(events(log, "poll-error")) == 1  # logged once, not every poll
    # WHEN the path heals and a notice comes
    emu.override(SPOT_PATH, clear=True)
    emu.interrupt("spot", lead_seconds=120)
    assert agent.step() is not None
    assert events(log, "poll-recovered") and len(_hook_runs(out)) == 1


def test_issue_15_bodies_no_longer_crash_the_agent_cli(emu, tmp_path):
    # GIVEN the exact bodies of the report, served at once, and the agent CLI as a process
    emu.override(SPOT_PATH, body='{"action": "terminate", "time": 12345}')
    emu.override(REBALANCE_PATH, body='{"noticeTime": 7}')
    emu.override(MAINTENANCE_PATH, body='[{"NotBefore": 5}]')
    out = tmp_path / "hook"
    done = subprocess.run([sys.executable, "-m", "spotkit.runtime.agent.cli", "--metadata-url", emu.url, "--once",
                           "--interval", "0.05", "--no-complete-lifecycle", "--on-notice", f"echo ran >> {out}"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    # THEN it drains (hook ran) and exits 0 without a traceback
    assert (done.returncode, "Traceback" in done.stderr) == (0, False), done.stderr
    assert out.read_text() == "ran\n"


# --- signal only the workload ---------------------------------------------------------------------

def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _stranger() -> subprocess.Popen:
    """A process that is not the workload, in a session of its own."""
    return subprocess.Popen(["sleep", "120"], start_new_session=True)


@pytest.mark.parametrize("case", ["zero", "one", "minus-one", "kthreadd", "own-group", "stale", "garbage"])
def test_pidfile_naming_a_bystander_is_refused(emu, tmp_path, case):
    stranger = _stranger()
    pidfile = tmp_path / "workload.pid"
    bystander_pidfile = tmp_path / "bystander.pid"
    try:
        if case == "kthreadd":
            try:
                stat = Path("/proc/2/stat").read_text()
            except OSError:
                pytest.skip("no pid 2 in this pid namespace")
            if "(kthreadd)" not in stat:
                pytest.skip("pid 2 is not kthreadd here")
        contents = {"zero": "0", "one": "1", "minus-one": "-1", "kthreadd": "2", "garbage": "12abc",
                    "stale": str(stranger.pid)}.get(case, "")
        if contents:
            pidfile.write_text(contents)
        if case == "stale":  # written two hours before the process it names started: its pid was reused
            old = time.time() - 7200
            os.utime(pidfile, (old, old))
        emu.interrupt("spot", lead_seconds=120)
        # WHEN the agent (in a group of its own, with a bystander in that group) drains
        script = (f'sleep 120 >/dev/null 2>&1 & echo $! > {bystander_pidfile}\n'
                  + (f'echo $$ > {pidfile}\n' if case == "own-group" else "")
                  + f'exec {sys.executable} -m spotkit.runtime.agent.cli --metadata-url {emu.url} --once --interval 0.05 '
                    f'--no-complete-lifecycle --on-notice true --workload-pidfile {pidfile}')
        done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT,
                              env={**os.environ, "PYTHONPATH": str(ROOT)}, start_new_session=True)
        lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
        bystander = int(bystander_pidfile.read_text())
        # THEN nobody was signaled: the agent says why, and its group-mate and the stranger still run
        assert done.returncode == 0, done.stderr
        [failed] = [e for e in lines if e["event"] == "signal-failed"]
        assert not [e for e in lines if e["event"] == "workload-signaled"]
        expected = {"zero": "refused: ", "one": "refused: ", "minus-one": "refused: ", "kthreadd": "process group 0",
                    "own-group": "the agent's own", "stale": "is stale", "garbage": "not a pid"}[case]
        assert expected in failed["error"]
        assert _alive(bystander) and _alive(stranger.pid)
    finally:
        stranger.kill()
        stranger.wait()
        if bystander_pidfile.exists():
            try:
                os.kill(int(bystander_pidfile.read_text()), signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.mark.parametrize("pgid", ["0", "1", "-5", "-1", "abc"])
def test_bad_workload_pgid_is_a_usage_error_not_an_oserror(pgid):
    done = subprocess.run([sys.executable, "-m", "spotkit.runtime.agent.cli", "--workload-pgid", pgid, "--once"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 2 and "argument --workload-pgid" in done.stderr and "Traceback" not in done.stderr
    cli = subprocess.run([sys.executable, "-m", "spotkit.cli.main", "agent", f"--workload-pgid={pgid}", "--once"],
                         capture_output=True, text=True, timeout=60, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert cli.returncode in (1, 2) and "Traceback" not in cli.stderr and "OSError" not in cli.stderr
    assert "workload-pgid" in cli.stderr or "workload_pgid" in cli.stderr


def test_own_process_group_is_refused_as_workload_pgid():
    with pytest.raises(ValueError, match="agent's own"):
        AgentConfig(workload_pgid=os.getpgrp())


def test_a_live_workload_with_a_fresh_pidfile_is_still_signaled(emu, tmp_path):
    workload = subprocess.Popen(["sleep", "120"], start_new_session=True)
    try:
        pidfile = tmp_path / "workload.pid"
        pidfile.write_text(str(workload.pid))
        emu.interrupt("spot", lead_seconds=120)
        result = run_until_notice(emu.url, AgentConfig(on_notice="true", workload_pidfile=str(pidfile), **FAST),
                                  log=quiet_log(), timeout=60)
        assert result.signal.error is None and workload.wait(timeout=30) == -signal.SIGTERM
    finally:
        if workload.poll() is None:
            workload.kill()
            workload.wait()


# --- the hook's children -------------------------------------------------------------------------

def test_detached_hook_child_does_not_hold_the_agent(emu, tmp_path):
    # GIVEN a hook that leaves a detached child holding its output, with a few seconds to the deadline
    child = tmp_path / "child.pid"
    emu.interrupt("spot", lead_seconds=8)
    log = quiet_log()
    try:
        result = run_until_notice(emu.url, AgentConfig(on_notice=f"setsid sleep 40 & echo $! > {child}; exit 0",
                                                       margin=1, **FAST), log=log, timeout=60)
        # THEN the agent returned while the detached child still runs: it never waited on the child's pipe
        assert result.hook.returncode == 0 and not result.hook.killed
        assert _alive(int(child.read_text()))
    finally:
        if child.exists():
            os.kill(int(child.read_text()), signal.SIGKILL)


def test_hook_past_its_deadline_with_a_detached_child_is_killed_and_the_agent_goes_on(emu, tmp_path):
    child = tmp_path / "child.pid"
    emu.interrupt("spot", lead_seconds=4)
    try:
        result = run_until_notice(emu.url, AgentConfig(on_notice=f"setsid sleep 40 & echo $! > {child}; sleep 60",
                                                       margin=1, kill_grace=0.5, **FAST), log=quiet_log(), timeout=60)
        assert result.hook.killed is True
        assert _alive(int(child.read_text()))  # it left the session: the agent did not wait for it either
    finally:
        if child.exists():
            os.kill(int(child.read_text()), signal.SIGKILL)


def test_background_child_left_in_the_hook_session_is_killed_at_the_deadline(emu, tmp_path):
    # GIVEN a hook that exits at once but leaves a child in its session
    child = tmp_path / "child.pid"
    emu.interrupt("spot", lead_seconds=4)
    result = run_until_notice(emu.url, AgentConfig(on_notice=f"sleep 60 & echo $! > {child}; exit 0", margin=1,
                                                   **FAST), log=quiet_log(), timeout=60)
    pid = int(child.read_text())
    # THEN the agent did not wait for it, and the whole session is killed at the deadline
    assert result.hook.returncode == 0
    deadline = time.monotonic() + 60
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(pid)
    assert time.time() >= result.deadline


# --- notices that come due at once ---------------------------------------------------------------

@pytest.mark.parametrize("action", ["hibernate", "stop"])
def test_spot_action_with_no_lead_runs_the_hook_at_once(emu, tmp_path, action):
    emu.interrupt("spot", action=action, lead_seconds=0)
    agent, log, out = _agent(emu, tmp_path)
    result = agent.step()
    assert result is not None and result.hook.returncode == 0
    assert not events(log, "hook-skipped")
    [due] = events(log, "hook-due-at-once")
    assert due["seconds_past_deadline"] >= 0 and due["best_effort_seconds"] > 0
    assert events(log, "hook-finished")[0]["seconds_allowed"] > 0
    assert len(_hook_runs(out)) == 1


def test_maintenance_event_already_due_runs_the_hook_at_once(emu, tmp_path):
    # GIVEN the AWS metadata mock's kind of event: active, and its start already passed
    past = (datetime.now(timezone.utc) - timedelta(minutes=5)).strftime("%d %b %Y %H:%M:%S GMT")
    emu.override(MAINTENANCE_PATH, body=json.dumps([{"Code": "system-reboot", "EventId": "instance-event-1",
                                                     "NotBefore": past, "State": "active"}]))
    agent, log, out = _agent(emu, tmp_path)
    result = agent.step()
    assert result.notice["kind"] == "scheduled-change" and result.notice["detail"]["EventId"] == "instance-event-1"
    assert events(log, "hook-due-at-once") and not events(log, "hook-skipped")
    assert len(_hook_runs(out)) == 1


# --- one notice identity across interruptions -----------------------------------------------------

def _spot_body(when: datetime, action: str = "stop") -> str:
    return json.dumps({"action": action, "time": when.strftime("%Y-%m-%dT%H:%M:%SZ")})


def test_persistent_instance_interrupted_again_three_hours_later_is_a_new_notice(emu, tmp_path):
    # GIVEN a first interruption three hours ago, handled, its state on disk
    state = tmp_path / "state.json"
    now = datetime.now(timezone.utc)
    emu.override(SPOT_PATH, body=_spot_body(now - timedelta(hours=3)))
    first, _, out = _agent(emu, tmp_path, state_file=str(state))
    assert first.step() is not None
    # WHEN the agent restarts (same boot) and the instance gets a second notice now
    emu.override(SPOT_PATH, body=_spot_body(now + timedelta(seconds=120)))
    second, log, _ = _agent(emu, tmp_path, state_file=str(state))
    result = second.step()
    # THEN it is a new notice: the hook runs again
    assert result is not None and len(_hook_runs(out)) == 2
    ids = json.loads(state.read_text())["handled"]
    assert len(ids) == 2 and result.notice["id"] in ids
    assert all(i.startswith("spot-interruption:i-0123456789abcdef0:") for i in ids)


def test_the_same_notice_after_a_restart_is_not_run_again_but_a_new_boot_is_a_new_life(emu, tmp_path):
    state = tmp_path / "state.json"
    emu.interrupt("lifecycle")
    a, _, out = _agent(emu, tmp_path, state_file=str(state))
    assert a.step() is not None
    b, log, _ = _agent(emu, tmp_path, state_file=str(state))
    assert b.step() is None and len(_hook_runs(out)) == 1
    # a new boot (the instance was stopped and started again): drains and completions start over
    c = Agent(ImdsClient(emu.url), b.config, log=quiet_log(), boot="boot-2")
    assert c.step() is not None and len(_hook_runs(out)) == 2


def test_moving_rebalance_notice_time_fires_the_rebalance_hook_once(emu, tmp_path):
    out = tmp_path / "rebalance"
    agent = Agent(ImdsClient(emu.url), AgentConfig(on_rebalance=f"echo rb >> {out}", **FAST), log=quiet_log(),
                  boot="boot-1")
    now = datetime.now(timezone.utc)
    for i in range(4):  # AWS's metadata mock answers the request time: a new noticeTime on every poll
        emu.override(REBALANCE_PATH, body=json.dumps({"noticeTime": (now + timedelta(seconds=i)).isoformat()}))
        agent.step()
    assert out.read_text() == "rb\n"
