"""The drill, end to end on one machine: real workload processes, the IMDS emulator, the agent.

Figures are asserted as relations, seeded so they are stable: with the agent no interruption loses
more than one step; the baseline (periodic checkpoints only) loses more in total."""

from __future__ import annotations

import pytest

from toolkit.drill import DrillSettings, plot, run_drill
from toolkit.errors import ToolkitError

SETTINGS = DrillSettings(interruptions=3, seed=11, steps=60, step_seconds=0.25, checkpoint_every=10,
                         notice_seconds=2.0, replacement_seconds=0.3, uptime_range=(1.5, 3.0))


@pytest.fixture(scope="module")
def drill(tmp_path_factory):
    return run_drill(SETTINGS, tmp_path_factory.mktemp("drill")), tmp_path_factory


def test_agent_loses_at_most_one_step_per_interruption(drill):
    results, _ = drill
    agent = results["agent"]
    assert len(agent.interruptions) == 3
    assert all(i.steps_lost <= 1 for i in agent.interruptions), [i.steps_lost for i in agent.interruptions]


def test_baseline_loses_more_than_the_agent(drill):
    results, _ = drill
    assert results["baseline"].steps_lost > results["agent"].steps_lost
    assert results["baseline"].steps_computed > results["agent"].steps_computed


def test_both_runs_finish_training(drill):
    results, _ = drill
    assert results["agent"].final_step == results["baseline"].final_step == SETTINGS.steps


def test_agent_detects_within_the_notice_and_checkpoints(drill):
    results, _ = drill
    for item in results["agent"].interruptions:
        assert item.detection_seconds is not None and item.detection_seconds < SETTINGS.notice_seconds
        assert item.checkpoint_seconds is not None
        assert item.resume_seconds is not None and item.resume_seconds >= SETTINGS.replacement_seconds


def test_same_seed_same_schedule():
    assert SETTINGS.schedule() == DrillSettings(**{**SETTINGS.__dict__}).schedule()
    assert SETTINGS.schedule() != DrillSettings(seed=12, interruptions=3, uptime_range=(1.5, 3.0)).schedule()


def test_plot_is_a_png(drill, tmp_path):
    results, _ = drill
    path = plot(results, tmp_path / "drill.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_notice_too_short_for_a_step_is_refused():
    with pytest.raises(ToolkitError, match=r"notice_seconds \(0.5\) must exceed step_seconds"):
        DrillSettings(notice_seconds=0.5, step_seconds=0.5).validate()


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
        [sys.executable, "-m", "toolkit.cli.main", "--output", "json", "--endpoint-url", aws.url, "drill",
         "-n", "1", "--steps", "16", "--step-seconds", "0.25", "--notice-seconds", "1.5", "--out", str(tmp_path)],
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
    assert (tmp_path / "drill.png").read_bytes()[:4] == b"\x89PNG"
