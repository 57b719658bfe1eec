"""The drill's analysis on hand-made timelines: every figure exact, no workload run.

Two runs of a 1 s-step job that is interrupted once (epoch seconds from 100):

- agent (hand-off): instance 1 computes steps 1-4 (to 104), is noticed at 103.5 (detected 103.7), saves
  a requested checkpoint of step 4 at 104.05 and its final marker; the replacement (pid 2, launched at
  the notice) resumes from it at 104.5 by hand-off, before the reclaim at 105; steps 5-6 end at 106.5.
- baseline: instance 1 computes steps 1-3 (periodic checkpoint of step 2 at 102), is noticed at 102.5
  and reclaimed at 103.5; the new instance resumes from step 2 at 104.5, computes 3 again and 4 (106.5).
"""

from __future__ import annotations

import pytest

from spotkit.rehearsal.drill_analysis import (
    Interruption,
    Timeline,
    analyze,
    compare,
    idle_intervals,
    interruption_line,
    plot_inputs,
    report,
)


def step(pid: int, n: int, t: float) -> dict:
    return {"event": "step", "pid": pid, "step": n, "t": t, "started": t - 1.0}


AGENT = Timeline(
    mode="agent", started_at=100.0, ended_at=107.0, policy="checkpoint-and-continue",
    interruptions=[Interruption(index=0, notice_at=103.5, reclaimed_at=105.0, replacement_launched_at=103.5,
                                detected_at=103.7, final_requested_at=104.2, old_pid=1, new_pid=2)],
    events=[
        {"event": "resume", "pid": 1, "step": 0, "from_checkpoint": None, "handoff": False, "t": 100.0},
        step(1, 1, 101.0), step(1, 2, 102.0),
        {"event": "checkpoint", "pid": 1, "step": 2, "reason": "periodic", "seconds": 0.01, "t": 102.01},
        step(1, 3, 103.0), step(1, 4, 104.0),
        {"event": "checkpoint", "pid": 1, "step": 4, "reason": "requested", "seconds": 0.05, "t": 104.05},
        {"event": "final-marker", "pid": 1, "step": 4, "t": 104.1},
        {"event": "resume", "pid": 2, "step": 4, "from_checkpoint": "ckpt-000000004.npz", "handoff": True,
         "t": 104.5},
        step(2, 5, 105.5), step(2, 6, 106.5),
    ])

BASELINE = Timeline(
    mode="baseline", started_at=100.0, ended_at=107.0,
    interruptions=[Interruption(index=0, notice_at=102.5, reclaimed_at=103.5, replacement_launched_at=103.5,
                                old_pid=1, new_pid=2)],
    events=[
        {"event": "resume", "pid": 1, "step": 0, "from_checkpoint": None, "t": 100.0},
        step(1, 1, 101.0), step(1, 2, 102.0),
        {"event": "checkpoint", "pid": 1, "step": 2, "reason": "periodic", "seconds": 0.01, "t": 102.01},
        step(1, 3, 103.0),
        {"event": "resume", "pid": 2, "step": 2, "from_checkpoint": "ckpt-000000002.npz", "t": 104.5},
        step(2, 3, 105.5), step(2, 4, 106.5),
    ])


@pytest.fixture(scope="module")
def runs():
    return {"agent": analyze(AGENT, step_seconds=1.0, compute_seconds=6.0),
            "baseline": analyze(BASELINE, step_seconds=1.0, compute_seconds=4.0)}


def test_the_hand_off_run_loses_nothing_and_idles_only_for_the_resume(runs):
    # GIVEN the agent timeline WHEN it is analysed
    agent = runs["agent"]
    # THEN the run ends at the last step, half a second over its 6 s of compute
    assert (agent.finished_at, agent.final_step, agent.steps_computed) == (106.5, 6, 6)
    assert (agent.wall_seconds, agent.overhead_seconds, agent.overhead_per_interruption) == (6.5, 0.5, 0.5)
    assert agent.goodput == 6.0 / 6.5
    assert agent.idle == [(104.0, 104.5)]
    # AND the interruption: detected 0.2 s after the notice, resumed from the final checkpoint by hand-off
    # half a second before the reclaim, no step lost
    item = agent.interruptions[0]
    assert (item.detection_seconds, item.checkpoint_seconds, item.final_checkpoint_at) == (0.2, 0.05, 104.05)
    assert (item.last_step_before, item.restored_step, item.steps_lost) == (4, 4, 0)
    assert (item.resumed_from, item.handoff, item.resumed_at, item.resume_seconds) == (
        "ckpt-000000004.npz", True, 104.5, -0.5)
    assert item.idle_seconds == 0.5
    assert agent.steps_computed_twice() == [] and agent.duplicate_resumes() == []
    assert agent.concurrent_training_seconds() == 0


def test_the_baseline_loses_the_step_after_its_last_checkpoint(runs):
    base = runs["baseline"]
    assert (base.wall_seconds, base.overhead_seconds, base.steps_computed) == (6.5, 2.5, 5)
    assert base.goodput == 4.0 / 6.5
    assert base.idle == [(103.0, 104.5)]
    item = base.interruptions[0]
    assert (item.last_step_before, item.restored_step, item.steps_lost, base.steps_lost) == (3, 2, 1, 1)
    assert (item.handoff, item.resume_seconds, item.idle_seconds) == (False, 1.0, 1.5)
    assert (item.detection_seconds, item.checkpoint_seconds, item.final_checkpoint_at) == (None, None, None)
    assert base.steps_computed_twice() == [3]


def test_analysis_does_not_change_the_recorded_facts(runs):
    # the simulation's record stays as recorded: the figures are on copies
    assert AGENT.interruptions[0].steps_lost == 0 and AGENT.interruptions[0].detection_seconds is None
    assert runs["agent"].interruptions[0].notice_at == AGENT.interruptions[0].notice_at


def test_idle_counts_from_the_rebalance_until_the_next_notice():
    # GIVEN two interruptions, the first with a rebalance at 101.5, and a gap (102, 103) before the second
    # notice at 104 and one (104, 105) after it
    events = [step(1, 1, 101.0), step(1, 2, 102.0), step(2, 3, 104.0), step(3, 4, 106.0)]
    timeline = Timeline(mode="agent", started_at=100.0, ended_at=106.0, events=events, interruptions=[
        Interruption(index=0, notice_at=102.5, reclaimed_at=103.0, rebalance_at=101.5, old_pid=1, new_pid=2),
        Interruption(index=1, notice_at=104.5, reclaimed_at=104.8, old_pid=2, new_pid=3)])
    # WHEN analysed
    run = analyze(timeline, step_seconds=1.0, compute_seconds=4.0)
    # THEN each interruption has the idle time of its own window: [101.5, 104.5) and [104.5, 106]
    assert run.idle == [(102.0, 103.0), (104.0, 105.0)]
    assert [i.idle_seconds for i in run.interruptions] == [1.5, 0.5]


def test_a_run_with_no_step_ends_when_its_last_instance_exits():
    run = analyze(Timeline(mode="baseline", started_at=10.0, ended_at=12.0, interruptions=[], events=[]),
                  step_seconds=0.5, compute_seconds=0.0)
    assert (run.finished_at, run.final_step, run.goodput, run.overhead_per_interruption) == (12.0, 0, 0.0, None)
    assert run.idle == [(10.0, 12.0)]


def test_compare_and_the_drill_json(runs):
    assert compare(runs) == {
        "overhead_per_interruption": {"agent": 0.5, "baseline": 2.5}, "overhead_ratio": 0.2,
        "goodput": {"agent": 0.9231, "baseline": 0.6154}, "wall_seconds": {"agent": 6.5, "baseline": 6.5}}
    doc = report(runs)
    assert list(doc) == ["agent", "baseline", "compare"]
    agent = doc["agent"]
    assert {k: agent[k] for k in ("notice_policy", "overhead_seconds", "idle_seconds_total", "idle_intervals",
                                  "steps_lost_max", "handoffs", "detection_seconds_mean", "resume_seconds_mean")} == {
        "notice_policy": "checkpoint-and-continue", "overhead_seconds": 0.5, "idle_seconds_total": 0.5,
        "idle_intervals": [[4.0, 4.5]], "steps_lost_max": 0, "handoffs": 1, "detection_seconds_mean": 0.2,
        "resume_seconds_mean": -0.5}
    assert [r["from_checkpoint"] for r in agent["resumes"]] == [None, "ckpt-000000004.npz"]
    assert doc["baseline"]["steps_computed_twice"] == [3] and doc["baseline"]["notice_policy"] is None


def test_plot_inputs_are_seconds_since_the_start(runs):
    inputs = plot_inputs(runs["baseline"])
    assert inputs["steps"] == [{"pid": 1, "points": [(1.0, 1), (2.0, 2), (3.0, 3)]},
                               {"pid": 2, "points": [(5.5, 3), (6.5, 4)]}]
    assert inputs["checkpoints"] == [(pytest.approx(2.01), 2)]
    assert (inputs["idle"], inputs["notices"], inputs["reclaims"], inputs["rebalances"]) == (
        [(3.0, 4.5)], [2.5], [3.5], [])
    assert inputs["title"] == "baseline: 6.5 s to step 4, goodput 62%, 1 steps lost, overhead 2.50 s/interruption"
    assert plot_inputs(runs["agent"])["title"].startswith("agent (checkpoint-and-continue): 6.5 s to step 6")


def test_interruption_line(runs):
    assert interruption_line("agent", runs["agent"].interruptions[0]) == (
        "agent:   interruption 1: last step 4, resumed from 4 (hand-off), lost 0, idle 0.50s")


def test_idle_intervals_ignore_gaps_under_a_twentieth_of_a_step():
    events = [step(1, 1, 101.0), {"event": "step", "pid": 1, "step": 2, "t": 102.04, "started": 101.04}]
    assert idle_intervals(events, 100.0, 102.04, step_seconds=1.0) == []
    assert idle_intervals(events, 99.0, 103.0, step_seconds=1.0) == [(99.0, 100.0), (102.04, 103.0)]
