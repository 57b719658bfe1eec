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
