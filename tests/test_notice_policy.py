"""The agent's notice policies (``spotkit.runtime.agent.policy``) and the hand-off marker, against the IMDS emulator.

checkpoint-and-continue: the hook (insurance checkpoint) runs at once, the workload keeps running, and
the signal goes out at the deadline minus the hook's measured time. Relations only, no wall-clock bounds."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.support.agent_harness import emu  # noqa: F401 - a fixture
from tests.support.agent_harness import start_workload
from spotkit.rehearsal import checkpoint
from spotkit.runtime.agent import AgentConfig, JsonLogger, run_until_notice
from spotkit.runtime.agent.policy import CHECKPOINT_AND_CONTINUE, STOP, plan_final, validate_policy

ROOT = Path(__file__).resolve().parents[1]
FAST = dict(interval=0.05, complete_lifecycle=False)


def _workload(tmp_path: Path) -> subprocess.Popen:
    """A process group that records when it gets SIGTERM (in ``got-sigterm``)."""
    return start_workload(tmp_path / "got-sigterm")


# --- the plan (pure) ------------------------------------------------------------------------------

def test_stop_signals_at_once_and_continue_waits_for_deadline_minus_checkpoint_time():
    stop = plan_final(STOP, deadline=1000.0, now=900.0, hook_seconds=3.0, hook_ok=True)
    assert stop.final_at == 900.0
    cont = plan_final(CHECKPOINT_AND_CONTINUE, deadline=1000.0, now=900.0, hook_seconds=3.0, hook_ok=True)
    assert cont.final_at == 997.0 and cont.measured
    # the longer of the measured and the configured checkpoint time
    assert plan_final(CHECKPOINT_AND_CONTINUE, deadline=1000.0, now=900.0, hook_seconds=3.0, hook_ok=True,
                      checkpoint_seconds=10.0).final_at == 990.0


def test_a_failed_insurance_checkpoint_or_no_time_left_signals_at_once():
    assert plan_final(CHECKPOINT_AND_CONTINUE, deadline=1000.0, now=900.0, hook_seconds=3.0,
                      hook_ok=False).final_at == 900.0
    late = plan_final(CHECKPOINT_AND_CONTINUE, deadline=1000.0, now=999.0, hook_seconds=3.0, hook_ok=True)
    assert late.final_at == 999.0 and "at once" in late.reason


def test_continue_needs_a_hook_or_an_estimate():
    with pytest.raises(ValueError, match="needs on_notice .* or checkpoint_seconds"):
        AgentConfig(notice_policy=CHECKPOINT_AND_CONTINUE)
    with pytest.raises(ValueError, match="notice_policy must be one of checkpoint-and-continue, stop"):
        validate_policy("later", on_notice="x", checkpoint_seconds=None)
    AgentConfig(notice_policy=CHECKPOINT_AND_CONTINUE, checkpoint_seconds=5.0)  # an estimate is enough


def test_policy_module_runs_on_python_39_with_the_standard_library_only(tmp_path):
    if not shutil.which("pyenv"):
        pytest.skip("pyenv (Python 3.9) not installed")
    shutil.copy(ROOT / "toolkit" / "runtime" / "agent" / "policy.py", tmp_path / "policy.py")  # alone, as the artifact ships it
    probe = ("import sys; sys.path.insert(0, sys.argv[1]); import policy; "
             "p = policy.plan_final('checkpoint-and-continue', deadline=100.0, now=10.0, hook_seconds=4.0, hook_ok=True); "
             "print(p.final_at, sys.version_info[:2])")
    res = subprocess.run(["python3.9", "-I", "-S", "-c", probe, str(tmp_path)], capture_output=True, text=True,
                         env={**os.environ, "PYENV_VERSION": "3.9.18"}, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split()[0] == "96.0" and "(3, 9)" in res.stdout


# --- the agent, over the emulator -----------------------------------------------------------------

def test_continue_keeps_the_workload_running_until_the_planned_final_checkpoint(emu, tmp_path):
    # GIVEN a workload and a notice 4 s ahead, margin 0.5, a hook that takes a moment
    workload = _workload(tmp_path)
    try:
        emu.interrupt("spot", lead_seconds=4)
        hook_done = tmp_path / "hook-done"
        config = AgentConfig(on_notice=f"sleep 0.2; date +%s.%N > {hook_done}", workload_pgid=workload.pid,
                             margin=0.5, notice_policy=CHECKPOINT_AND_CONTINUE, **FAST)
        # WHEN the agent drains
        result = run_until_notice(emu.url, config, log=JsonLogger(io.StringIO()), timeout=30)
        assert workload.wait(timeout=30) == 0
        got_sigterm = float((tmp_path / "got-sigterm").read_text())
        # THEN the hook ran first, the workload kept running after it, and the signal went out at the plan:
        # deadline minus the measured hook time, later than the hook's end
        plan = result.final_plan
        hook_seconds = result.hook_finished_at - result.hook_started_at
        assert plan["policy"] == CHECKPOINT_AND_CONTINUE and plan["outcome"] == "due"
        assert plan["final_at"] == pytest.approx(result.deadline - hook_seconds, abs=1e-6)
        assert result.hook_finished_at < plan["final_at"] <= result.signal_sent_at
        assert got_sigterm >= plan["final_at"]
        assert float(hook_done.read_text()) < plan["final_at"]
    finally:
        if workload.poll() is None:
            workload.kill()


def test_stop_signals_right_after_the_hook(emu, tmp_path):
    workload = _workload(tmp_path)
    try:
        emu.interrupt("spot", lead_seconds=60)
        result = run_until_notice(emu.url, AgentConfig(on_notice="true", workload_pgid=workload.pid, margin=0.5,
                                                       **FAST), log=JsonLogger(io.StringIO()), timeout=30)
        assert workload.wait(timeout=30) == 0
        # THEN no plan, and the signal went out long before the deadline (the whole window is left unused)
        assert result.final_plan is None
        assert result.hook_finished_at <= result.signal_sent_at < result.deadline - 30
    finally:
        if workload.poll() is None:
            workload.kill()


def test_continue_stops_waiting_when_the_workload_finishes_on_its_own(emu, tmp_path):
    workload = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.5)"], start_new_session=True)
    emu.interrupt("spot", lead_seconds=60)
    result = run_until_notice(emu.url, AgentConfig(on_notice="true", workload_pgid=workload.pid, margin=0.5,
                                                   notice_policy=CHECKPOINT_AND_CONTINUE, **FAST),
                              log=JsonLogger(io.StringIO()), timeout=30)
    workload.wait(timeout=30)
    # THEN the agent stopped waiting when the workload was gone, long before the planned final checkpoint
    assert result.final_plan["outcome"] == "workload-exited"
    assert result.final_plan["final_at"] > result.deadline - 5
    assert result.signal_sent_at is None or result.signal_sent_at < result.deadline - 30


@pytest.mark.slow  # starts the agent command line twice: seconds
def test_cli_notice_policy_option_and_its_user_error(emu, tmp_path):
    workload = _workload(tmp_path)
    try:
        emu.interrupt("spot", lead_seconds=10)  # room for the CLI's start on a loaded machine
        proc = subprocess.run(
            [sys.executable, "-m", "spotkit.cli.main", "agent", "--metadata-url", emu.url, "--on-notice", "true",
             "--interval", "0.05", "--margin", "0.5", "--once", "--no-complete-lifecycle",
             "--workload-pgid", str(workload.pid), "--notice-policy", "checkpoint-and-continue"],
            capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        lines = [json.loads(line) for line in proc.stdout.splitlines()]
        names = [e["event"] for e in lines]
        assert names.index("hook-finished") < names.index("final-checkpoint-planned") < names.index("workload-signaled")
        assert workload.wait(timeout=30) == 0
    finally:
        if workload.poll() is None:
            workload.kill()
    bad = subprocess.run([sys.executable, "-m", "spotkit.cli.main", "agent", "--metadata-url", emu.url, "--once",
                          "--notice-policy", "checkpoint-and-continue"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1
    assert "needs on_notice" in bad.stderr and "next: spotkit agent --help" in bad.stderr
    assert "Traceback" not in bad.stderr


# --- the hand-off marker --------------------------------------------------------------------------

def test_final_marker_is_claimed_once(tmp_path):
    checkpoint.save(tmp_path, 7, {"w": np.zeros(2)})
    checkpoint.write_final_marker(tmp_path, 7)
    first = checkpoint.claim_final_marker(tmp_path)
    assert first["step"] == 7 and first["checkpoint"] == "ckpt-000000007.npz"
    assert checkpoint.claim_final_marker(tmp_path) is None  # a second replacement gets nothing
    assert checkpoint.wait_for_final_marker(tmp_path, timeout=0.05) is None
    assert checkpoint.list_steps(tmp_path) == [7]  # claiming touches no checkpoint


def test_workload_hands_off_its_final_checkpoint_to_a_waiting_replacement(tmp_path):
    # GIVEN a training workload and a replacement already waiting for the hand-off
    progress = tmp_path / "progress.jsonl"
    ckpt = tmp_path / "ckpt"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    base = [sys.executable, "-m", "spotkit.rehearsal.workload", "--checkpoint-dir", str(ckpt), "--steps", "400",
            "--step-seconds", "0.05", "--checkpoint-every", "1000", "--progress", str(progress)]
    old = subprocess.Popen(base, env=env, start_new_session=True)
    new = subprocess.Popen([*base, "--wait-for-final", "120"], env=env, start_new_session=True)
    try:
        def events():
            return [json.loads(line) for line in progress.read_text().splitlines()] if progress.exists() else []

        deadline = time.monotonic() + 60
        while not [e for e in events() if e["event"] == "step" and e["pid"] == old.pid and e["step"] >= 3]:
            assert time.monotonic() < deadline and old.poll() is None
            time.sleep(0.05)
        # WHEN the old one is told to stop (SIGTERM: final checkpoint and exit)
        os.killpg(old.pid, 15)
        assert old.wait(timeout=60) == 0
        deadline = time.monotonic() + 60
        while not [e for e in events() if e["event"] == "step" and e["pid"] == new.pid]:
            assert time.monotonic() < deadline and new.poll() is None
            time.sleep(0.05)
        # THEN the replacement resumed from exactly the final checkpoint, after it was written, and
        # computed no step the old one had computed
        log = events()
        final = [e for e in log if e["pid"] == old.pid and e["event"] == "final-marker"][0]
        resume = [e for e in log if e["pid"] == new.pid and e["event"] == "resume"][0]
        assert resume["handoff"] is True and resume["step"] == final["step"]
        assert resume["from_checkpoint"] == checkpoint.checkpoint_path(ckpt, final["step"]).name
        saved = [e for e in log if e["pid"] == old.pid and e["event"] == "checkpoint" and e["step"] == final["step"]]
        assert saved and resume["t"] >= saved[-1]["t"]  # resumed only once the final checkpoint was durable
        old_steps = {e["step"] for e in log if e["pid"] == old.pid and e["event"] == "step"}
        new_steps = {e["step"] for e in log if e["pid"] == new.pid and e["event"] == "step"}
        assert max(old_steps) == final["step"] and not old_steps & new_steps
    finally:
        for p in (old, new):
            if p.poll() is None:
                os.killpg(p.pid, 9)
                p.wait()


# --- where it is the default ----------------------------------------------------------------------

def _exec_start(script: str) -> list[str]:
    import shlex

    line = next(l for l in script.splitlines() if l.startswith("ExecStart="))
    return shlex.split(line[len("ExecStart="):].replace("%%", "%").replace("$$", "$"))


def test_training_stack_runs_the_agent_with_checkpoint_and_continue():
    from spotkit.stacks.training import TrainingConfig, TrainingStack
    from tests.support.synth import build_stack, local_value

    doc, _ = build_stack(TrainingStack, TrainingConfig())
    argv = _exec_start(local_value(doc, "fleet_spotkit_training_user_data"))
    assert argv[argv.index("--notice-policy") + 1] == "checkpoint-and-continue"
    assert argv[argv.index("--checkpoint-seconds") + 1] == "60"


def test_other_groups_keep_stop_and_an_explicit_policy_wins():
    from dataclasses import replace

    from spotkit.constructs.agent_artifact import AgentArtifactRef
    from spotkit.constructs.agent_user_data import AgentSettings, agent_user_data_part
    from spotkit.constructs.compute_group import ComputeGroupSettings
    from spotkit.stacks.training import training_agent_defaults

    ref = AgentArtifactRef("s3://bucket/agent/" + "a" * 64 + "/spotkit-agent.pyz", "a" * 64)
    assert "--notice-policy" not in _exec_start(agent_user_data_part(AgentSettings(), artifact=ref).script)
    chosen = training_agent_defaults(ComputeGroupSettings(agent=AgentSettings(notice_policy="stop")))
    assert (chosen.agent.notice_policy, chosen.agent.checkpoint_seconds) == ("stop", None)
    tuned = training_agent_defaults(replace(ComputeGroupSettings(), agent=AgentSettings(checkpoint_seconds=20.0)))
    assert (tuned.agent.notice_policy, tuned.agent.checkpoint_seconds) == ("checkpoint-and-continue", 20.0)


def test_agent_settings_reject_an_unknown_policy_and_a_checkpoint_longer_than_the_notice():
    from spotkit.constructs.agent_user_data import AgentSettings, validate_agent_settings
    from spotkit.errors import ValidationError

    with pytest.raises(ValidationError, match="group.agent: agent.notice_policy must be checkpoint-and-continue or stop"):
        validate_agent_settings("group.agent", AgentSettings(notice_policy="later"))
    with pytest.raises(ValidationError, match=r"agent.checkpoint_seconds must be between 0 and 105 \(120 s notice"):
        validate_agent_settings("group.agent", AgentSettings(checkpoint_seconds=110.0))


def test_an_auto_scaling_termination_hands_off_at_once_under_either_policy(emu, tmp_path):
    # GIVEN the group terminating the instance (its replacement already up, or a scale-in)
    workload = _workload(tmp_path)
    try:
        emu.interrupt("lifecycle")
        result = run_until_notice(emu.url, AgentConfig(on_notice="true", workload_pgid=workload.pid, margin=0.5,
                                                       notice_policy=CHECKPOINT_AND_CONTINUE, lifecycle_heartbeat=300,
                                                       interval=0.05, complete_lifecycle=False),
                                  log=JsonLogger(io.StringIO()), timeout=30)
        assert workload.wait(timeout=30) == 0
        # THEN no keep-training plan: the signal follows the hook, minutes before the lifecycle deadline
        assert result.final_plan is None
        assert result.hook_finished_at <= result.signal_sent_at < result.deadline - 60
    finally:
        if workload.poll() is None:
            workload.kill()
