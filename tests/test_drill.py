"""The drill, end to end on one machine: real workload processes, the IMDS emulator, the agent.

Figures are asserted as relations, seeded so they are stable: with the agent (checkpoint-and-continue and
the hand-off) no interruption loses more than one step, nothing trains twice from one state, and the
overhead per interruption is well below the baseline's (periodic checkpoints, restart after the reclaim),
measured in the same run."""

from __future__ import annotations

import pytest

from spotkit.rehearsal.drill import DrillSettings, compare, idle_intervals, plot, run_drill
from spotkit.errors import ToolkitError

SETTINGS = DrillSettings(interruptions=3, seed=11, steps=80, step_seconds=0.25, checkpoint_every=10,
                         notice_seconds=2.0, replacement_seconds=0.3, uptime_range=(1.5, 3.0), rebalance_lead=1.0)


@pytest.fixture(scope="module")
def drill(tmp_path_factory):
    return run_drill(SETTINGS, tmp_path_factory.mktemp("drill")), tmp_path_factory


@pytest.mark.slow  # the drill runs real workloads for about a minute
def test_agent_loses_at_most_one_step_per_interruption(drill):
    results, _ = drill
    agent = results["agent"]
    assert len(agent.interruptions) == len(results["baseline"].interruptions) == 3
    assert all(i.steps_lost <= 1 for i in agent.interruptions), [i.steps_lost for i in agent.interruptions]


@pytest.mark.slow  # the drill runs real workloads for about a minute
def test_nothing_trains_twice_from_one_state(drill):
    results, _ = drill
    agent = results["agent"]
    # every instance resumed from a different checkpoint, never two instances computing at once, and a
    # step computed twice only where a step was lost
    assert agent.duplicate_resumes() == []
    assert agent.concurrent_training_seconds() == 0
    assert len(agent.steps_computed_twice()) == agent.steps_lost
    assert agent.steps_computed == SETTINGS.steps + agent.steps_lost
    resumed = [r["from_checkpoint"] for r in agent.resumes()]
    assert resumed[0] is None and len(resumed) == 4


@pytest.mark.slow  # the drill runs real workloads for about a minute
def test_replacement_boots_during_the_notice_and_resumes_from_the_final_checkpoint(drill):
    results, _ = drill
    for item in results["agent"].interruptions:
        assert item.replacement_launched_at < item.reclaimed_at
        if item.rebalance_at is not None:  # capacity rebalancing: launched at the recommendation
            assert item.rebalance_at <= item.replacement_launched_at < item.notice_at
        assert item.handoff, item
        assert item.final_checkpoint_at is not None and item.resumed_at >= item.final_checkpoint_at
        assert item.resumed_from == f"ckpt-{item.restored_step:09d}.npz"
        assert item.final_requested_at > item.detected_at  # the workload kept training after the notice
    for item in results["baseline"].interruptions:
        assert not item.handoff and item.resumed_at > item.reclaimed_at


def test_rebalance_recommendations_are_seeded_and_sometimes_absent():
    leads = DrillSettings(interruptions=12, seed=3, rebalance_lead=10.0).rebalance_schedule()
    assert leads == DrillSettings(interruptions=12, seed=3, rebalance_lead=10.0).rebalance_schedule()
    assert None in leads and 10.0 in leads
    assert DrillSettings(interruptions=3).rebalance_schedule() == [None, None, None]


@pytest.mark.slow  # the drill runs real workloads for about a minute
def test_agent_overhead_and_idle_are_well_below_the_baseline(drill):
    results, _ = drill
    agent, base = results["agent"], results["baseline"]
    cmp = compare(results)
    assert agent.overhead_per_interruption < 0.5 * base.overhead_per_interruption, cmp
    assert cmp["overhead_ratio"] < 0.5
    assert agent.goodput > base.goodput and agent.wall_seconds < base.wall_seconds
    assert sum(i.idle_seconds for i in agent.interruptions) < sum(i.idle_seconds for i in base.interruptions)
    assert base.steps_lost > agent.steps_lost


@pytest.mark.slow  # the drill runs real workloads for about a minute
def test_both_runs_finish_training(drill):
    results, _ = drill
    assert results["agent"].final_step == results["baseline"].final_step == SETTINGS.steps


@pytest.mark.slow  # the drill runs real workloads for about a minute
def test_agent_detects_within_the_notice_and_checkpoints(drill):
    results, _ = drill
    for item in results["agent"].interruptions:
        assert item.detection_seconds is not None and item.detection_seconds < SETTINGS.notice_seconds
        assert item.checkpoint_seconds is not None


@pytest.mark.slow  # the drill runs real workloads for about a minute
def test_summary_keeps_wall_seconds_and_the_goodput_figures(drill):
    results, _ = drill
    for run in results.values():
        s = run.summary()
        assert s["wall_seconds"] == round(run.wall_seconds, 3) > s["compute_seconds"] == SETTINGS.compute_seconds
        assert s["overhead_seconds"] == pytest.approx(s["wall_seconds"] - s["compute_seconds"], abs=0.01)
        assert 0 < s["goodput"] < 1


def test_idle_intervals_are_the_gaps_between_steps():
    events = [{"event": "step", "started": 1.0, "t": 2.0}, {"event": "step", "started": 2.001, "t": 3.0},
              {"event": "step", "started": 5.0, "t": 6.0}]
    assert idle_intervals(events, 0.0, 6.0, 1.0) == [(0.0, 1.0), (3.0, 5.0)]


def test_same_seed_same_schedule():
    assert SETTINGS.schedule() == DrillSettings(**{**SETTINGS.__dict__}).schedule()
    assert SETTINGS.schedule() != DrillSettings(seed=12, interruptions=3, uptime_range=(1.5, 3.0)).schedule()


@pytest.mark.slow  # the drill runs real workloads for about a minute
def test_plot_is_a_png(drill, tmp_path):
    results, _ = drill
    path = plot(results, tmp_path / "drill.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_notice_too_short_for_a_step_is_refused():
    with pytest.raises(ToolkitError, match=r"notice_seconds \(0.5\) must exceed step_seconds"):
        DrillSettings(notice_seconds=0.5, step_seconds=0.5).validate()


def test_a_job_shorter_than_its_interruptions_is_refused():
    with pytest.raises(ToolkitError, match=r"40 steps of 0.5 s \(20.0 s of compute\) may finish before the last of 3"):
        DrillSettings(steps=40).validate()


def test_drill_cli_reattaches_the_retained_volume_on_the_emulator(aws, tmp_path):
    # GIVEN the AWS emulator WHEN `spotkit drill` runs with one interruption
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root), "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    result = subprocess.run(
        [sys.executable, "-m", "spotkit.cli.main", "--output", "json", "--endpoint-url", aws.url, "drill",
         "-n", "1", "--steps", "30", "--step-seconds", "0.25", "--notice-seconds", "1.5", "--out", str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    (reclaim,) = summary["agent"]["interruptions"]
    # THEN the volume survived the termination and the runbook attached it to the replacement, same device
    assert reclaim["aws"]["survived_termination"] is True
    assert reclaim["aws"]["reattached"] is True
    assert reclaim["aws"]["device"] == "/dev/sdf"
    assert reclaim["aws"]["to_instance"] != reclaim["aws"]["from_instance"]
    volume = aws.client("ec2").describe_volumes(VolumeIds=[reclaim["aws"]["volume_id"]])["Volumes"][0]
    assert volume["Attachments"][0]["InstanceId"] == reclaim["aws"]["to_instance"]
    assert summary["agent"]["steps_lost_max"] <= 1
    assert summary["agent"]["wall_seconds"] > 0 and summary["baseline"]["wall_seconds"] > 0
    assert summary["compare"]["overhead_ratio"] is not None
    assert (tmp_path / "drill.png").read_bytes()[:4] == b"\x89PNG"
