"""The drill on GCP's and Azure's metadata emulators: their notices, the agent with --cloud, scaled windows.

Relations only (seeded): every interruption is detected by the agent reading the cloud's own metadata
(GCP's hanging GET on ``instance/preempted``, Azure's ``Preempt`` scheduled event), the agent run loses at
most one step per interruption and beats the baseline, and on Azure each event is acknowledged and the
reclaim follows the acknowledgement.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from spotkit.rehearsal.drill import DrillSettings, run_drill
from spotkit.errors import ToolkitError
from spotkit.runtime.notice import parse_time

ROOT = Path(__file__).resolve().parents[1]


def settings(cloud: str) -> DrillSettings:
    return DrillSettings(interruptions=2, seed=5, steps=80, step_seconds=0.25, checkpoint_every=10,
                         notice_seconds=4.0, replacement_seconds=0.3, uptime_range=(1.5, 3.0), cloud=cloud)


@pytest.fixture(scope="module", params=["gcp", "azure"])
def drill(request, tmp_path_factory):
    out = tmp_path_factory.mktemp(f"drill-{request.param}")
    return request.param, run_drill(settings(request.param), out), out


def agent_log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "agent" / "agent.jsonl").read_text().splitlines()]


@pytest.mark.slow  # the drill runs real workloads for about a minute
def test_the_agent_reads_the_clouds_own_notice_at_every_interruption(drill):
    cloud, results, out = drill
    agent = results["agent"]
    assert len(agent.interruptions) == len(results["baseline"].interruptions) == 2
    log = agent_log(out)
    assert {e["cloud"] for e in log if e["event"] == "agent-started"} == {cloud}
    detected = [e["notice"] for e in log if e["event"] == "notice-detected"]
    assert len(detected) == 2 and all(n["kind"] == "spot-interruption" for n in detected)
    assert {n["action"] for n in detected} == {"gcp": {"preempted"}, "azure": {"Preempt"}}[cloud]
    previous = agent.started_at
    for item in agent.interruptions:  # (GCP's hanging GET can answer before the drill's POST has returned)
        assert item.detected_at is not None and previous < item.detected_at < item.reclaimed_at
        previous = item.reclaimed_at
        assert item.final_requested_at is not None and item.final_requested_at < item.reclaimed_at


@pytest.mark.slow  # the drill runs real workloads for about a minute
def test_azure_events_are_acknowledged_and_the_reclaim_follows(drill):
    cloud, results, out = drill
    log = agent_log(out)
    items = results["agent"].interruptions
    if cloud != "azure":
        assert not any(e["event"] in ("notice-acknowledged", "acknowledge-skipped") for e in log)
        assert [i.acknowledged for i in items] == [None, None]
        return
    # Each event has one answer, decided by the workload: acknowledged once it has exited, or (on a loaded
    # machine, its final checkpoint still running at the deadline) left to proceed at its own time. Which one
    # is up to the machine; that the answer follows from the workload's state, and that the platform (the
    # emulator's own record of StartRequests) went ahead on the acknowledgement, is not.
    answers = [e for e in log if e["event"] in ("notice-acknowledged", "acknowledge-skipped",
                                                "workload-exited", "workload-still-running")]
    detected = [e["notice"] for e in log if e["event"] == "notice-detected"]
    pairs = list(zip(answers[0::2], answers[1::2]))
    assert len(answers) == 4 and len(pairs) == len(detected) == 2, answers
    for item, (workload, answer), notice in zip(items, pairs, detected):
        if workload["event"] == "workload-exited":
            assert answer["event"] == "notice-acknowledged", answer
            assert answer["event_type"] == "Preempt" and answer["status"] == 200
            assert answer["event_id"] == notice["detail"]["EventId"]
            # the reclaim came on the acknowledgement, unless the acknowledgement itself came after it
            assert item.acknowledged or parse_time(answer["ts"]).timestamp() >= item.reclaimed_at, answer
        else:
            assert answer["event"] == "acknowledge-skipped", answer
            assert answer["notice"]["detail"]["EventId"] == notice["detail"]["EventId"]
            assert item.acknowledged is False  # unanswered: the event proceeded at its own time


@pytest.mark.slow  # the drill runs real workloads for about a minute
def test_agent_run_loses_at_most_one_step_and_beats_the_baseline(drill):
    cloud, results, _ = drill
    agent, base = results["agent"], results["baseline"]
    assert agent.final_step == base.final_step == settings(cloud).steps
    assert all(i.steps_lost <= 1 for i in agent.interruptions), [i.steps_lost for i in agent.interruptions]
    assert agent.duplicate_resumes() == [] and agent.concurrent_training_seconds() == 0
    assert agent.overhead_per_interruption < base.overhead_per_interruption
    assert base.steps_lost > agent.steps_lost


def test_rebalance_lead_and_unknown_clouds_are_refused():
    with pytest.raises(ToolkitError, match="gcp gives no rebalance recommendation"):
        DrillSettings(cloud="gcp", rebalance_lead=1.0).validate()
    with pytest.raises(ToolkitError, match="cloud must be one of aws, gcp, azure"):
        DrillSettings(cloud="oci").validate()


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "spotkit.cli.main", *args], env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.slow  # the drill runs real workloads for about a minute
def test_drill_cli_on_gcp(tmp_path):
    result = _cli("--output", "json", "drill", "--cloud", "gcp", "-n", "1", "--steps", "30", "--step-seconds",
                  "0.25", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    (reclaim,) = summary["agent"]["interruptions"]
    assert reclaim["aws"] is None  # no AWS step on GCP
    assert reclaim["detected_at"] is not None and summary["agent"]["steps_lost_max"] <= 1
    assert summary["agent"]["final_step"] == summary["baseline"]["final_step"] == 30


def test_drill_cli_refuses_the_aws_step_on_azure(tmp_path):
    result = _cli("drill", "--cloud", "azure", "--aws", "--out", str(tmp_path))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        "Error: --aws re-attaches an EBS volume with the AWS runbook: it does not apply to --cloud azure",
        "  next: spotkit drill --cloud azure --no-aws"]
