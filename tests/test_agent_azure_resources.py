"""Azure: the agent acts only on Scheduled Events whose ``Resources`` name its own VM (issue 26).

The document is delivered to every VM of an availability set or a scale set placement group; each event
names the VMs it concerns. Events for other VMs are logged as seen and left alone: no hook, no signal,
no ``StartRequests`` (which would let the event proceed for those VMs). An event naming this VM and
others is drained here but not acknowledged. Over the wire against the Azure metadata emulator, plus the
documented multi-VM sample (tests/fixtures/clouds/SOURCES.md) through the monitor and the emulator.
"""

from __future__ import annotations

import io
import json
import threading
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tests.support.agent_harness import events, start_workload, stop_workload, wait_for
from spotkit.runtime.agent import Agent, AgentConfig, JsonLogger, run_until_notice
from spotkit.runtime.agent.clouds import client_for
from spotkit.runtime.agent.clouds.azure import AzureScheduledEventsMonitor
from spotkit.runtime.agent.clouds.client import InstanceIdentity
from spotkit.rehearsal.imds.azure import AzureEmulator, AzureSettings
from spotkit.rehearsal.imds.gcp import GcpEmulator, GcpSettings

FIXTURES = Path(__file__).parent / "fixtures" / "clouds"
FAST = dict(interval=0.05, complete_lifecycle=False, margin=1.0)
ME = "spotkit-training-0"  # the emulator's VM name (AzureSettings.vm_name)


@pytest.fixture()
def workload():
    """A workload that dies of SIGTERM."""
    proc = start_workload()
    yield proc
    stop_workload(proc)


def identity(name: str) -> InstanceIdentity:
    return InstanceIdentity(lambda: (f"{name}-vmid", name))


# --- the documented sample: one Freeze naming two VMs -------------------------------------------------

def test_documented_two_vm_freeze_is_seen_by_the_vms_it_names_and_left_alone_by_the_others():
    documents = json.loads((FIXTURES / "azure" / "scheduled-events-freeze-two-vms.json").read_text())
    now = datetime(2026, 4, 11, 22, 20, tzinfo=timezone.utc)
    for vm, named in (("WestNO_0", True), ("westno_1", True), ("WestNO_7", False)):
        seen: list[tuple] = []
        monitor = AzureScheduledEventsMonitor(None, identity=identity(vm), log=lambda e, **f: seen.append((e, f)))
        # WHEN each VM's agent reads the four incarnations
        notices = [n for doc in documents for n in monitor.parse(json.dumps(doc), now)]
        if named:
            # THEN a VM the event names (Azure names are case-insensitive) gets it, Scheduled then Started, as
            # one advisory notice (a Freeze keeps memory: no drain)
            assert [n.detail["EventStatus"] for n in notices] == ["Scheduled", "Started"]
            assert len({n.key for n in notices}) == 1 and all(n.detail["advisory"] for n in notices)
            assert notices[0].detail["Resources"] == ["WestNO_0", "WestNO_1"]
        else:
            # THEN another VM of the set gets nothing, and logs the event once as not its own
            assert notices == []
            not_ours = [f for e, f in seen if e == "scheduled-event-not-ours"]
            assert [(f["event_id"], f["resources"], f["vm"]) for f in not_ours] == [
                ("C7061BAC-AFDC-4513-B24B-AA5F13A16123", ["WestNO_0", "WestNO_1"], "WestNO_7")]


def test_documented_sample_served_by_the_emulator_runs_the_advisory_hook_on_a_named_vm(tmp_path):
    documents = json.loads((FIXTURES / "azure" / "scheduled-events-freeze-two-vms.json").read_text())
    out = tmp_path / "advisory"
    with AzureEmulator(AzureSettings(vm_name="WestNO_1")) as az:
        az.serve_events(documents[1]["Events"])
        log = JsonLogger(io.StringIO())
        agent = Agent(client_for("azure", az.url), AgentConfig(cloud="azure", on_advisory=f"echo $SPOTKIT_NOTICE_ACTION > {out}",
                                                              **FAST), log=log)
        agent.step()
        assert out.read_text().strip() == "Freeze" and agent.drained is None
        assert az.snapshot()["start_requests"] == []


# --- another VM's event: left alone -------------------------------------------------------------------

@pytest.mark.parametrize("kind, resources", [
    ("preempt", ["spotkit-training-1"]),
    ("terminate", ["spotkit-training-1", "spotkit-training-2", "spotkit-training-3"]),  # a scale-in of others
    ("reboot", ["SPOTKIT-TRAINING-10"]),
])
def test_an_event_for_other_vms_runs_no_hook_signals_nothing_and_is_never_acknowledged(tmp_path, workload, kind,
                                                                                      resources):
    hook_ran = tmp_path / "hook-ran"
    with AzureEmulator() as az:
        # GIVEN an event of the scale set that names other VMs only
        event = az.interrupt(kind, lead_seconds=30, resources=resources)
        log = JsonLogger(io.StringIO())
        agent = Agent(client_for("azure", az.url),
                      AgentConfig(cloud="azure", on_notice=f"touch {hook_ran}", workload_pgid=workload.pid, **FAST),
                      log=log)
        stop = threading.Event()
        thread = threading.Thread(target=agent.run, args=(stop,), daemon=True)
        thread.start()
        try:
            # WHEN the agent has read the document several times
            wait_for(lambda: events(log, "scheduled-event-not-ours"), "the event seen as another VM's")
            polls = agent.polls
            wait_for(lambda: agent.polls >= polls + 5, "more polls")
        finally:
            stop.set()
            thread.join(timeout=30)
        snap = az.snapshot()
    # THEN it was logged once as another VM's, and left alone: no hook, no signal, no acknowledgement
    [seen] = events(log, "scheduled-event-not-ours")
    assert (seen["event_id"], seen["resources"], seen["vm"]) == (event["EventId"], resources, ME)
    assert not hook_ran.exists() and workload.poll() is None and agent.drained is None
    assert snap["start_requests"] == [] and [e["EventId"] for e in snap["events"]] == [event["EventId"]]
    assert not events(log, "notice-detected")


def test_an_event_naming_this_vm_and_another_is_drained_but_not_acknowledged(tmp_path, workload):
    with AzureEmulator() as az:
        # GIVEN a Preempt naming this VM and another one of the set
        event = az.interrupt("preempt", lead_seconds=30, resources=["spotkit-training-1", ME])
        log = JsonLogger(io.StringIO())
        result = run_until_notice(az.url, AgentConfig(cloud="azure", on_notice="true", workload_pgid=workload.pid,
                                                      **FAST), log=log, timeout=60)
        snap = az.snapshot()
    # THEN this VM drains (hook, signal) but does not acknowledge: that would start the event for the other VM
    assert result.hook.returncode == 0 and workload.wait(timeout=30) != 0
    assert snap["start_requests"] == [] and snap["events"][0]["EventId"] == event["EventId"]
    [skipped] = events(log, "acknowledge-skipped")
    assert skipped["other_vms"] == ["spotkit-training-1"] and skipped["event_id"] == event["EventId"]
    assert not events(log, "notice-acknowledged")


def test_a_workload_still_saving_at_the_deadline_is_not_cut_short_by_an_acknowledgement():
    proc = start_workload(ignore_sigterm=True)  # still running at the deadline (a slow final checkpoint)
    try:
        with AzureEmulator() as az:
            # GIVEN a Preempt for this VM alone, 3 s ahead (the deadline is 2 s away with the 1 s margin)
            az.interrupt("preempt", lead_seconds=3, resources=[ME])
            log = JsonLogger(io.StringIO())
            run_until_notice(az.url, AgentConfig(cloud="azure", on_notice="true", workload_pgid=proc.pid, **FAST),
                             log=log, timeout=60)
            snap = az.snapshot()
        # THEN the agent does not tell Azure to proceed now: the event keeps its own time
        assert snap["start_requests"] == []
        [skipped] = events(log, "acknowledge-skipped")
        assert skipped["reason"].startswith("the workload was still running at the deadline")
        assert events(log, "workload-still-running") and not events(log, "notice-acknowledged")
    finally:
        stop_workload(proc)


def test_an_agent_that_cannot_read_its_vm_name_acts_on_nothing_and_says_why(tmp_path):
    hook_ran = tmp_path / "hook-ran"
    with AzureEmulator(AzureSettings(vm_name="")) as az:
        az.interrupt("preempt", lead_seconds=30, resources=["spotkit-training-1"])
        log = JsonLogger(io.StringIO())
        agent = Agent(client_for("azure", az.url), AgentConfig(cloud="azure", on_notice=f"touch {hook_ran}", **FAST),
                      log=log)
        for _ in range(3):
            agent.step()
        assert az.snapshot()["start_requests"] == []
    [error] = events(log, "poll-error")
    assert error["retryable"] is True
    assert error["error"].endswith("cannot tell which scheduled events are this VM's, none acted on yet")
    assert "gave no compute name" in error["error"] and not hook_ran.exists()


# --- notice ids carry the machine's identity ---------------------------------------------------------

def test_azure_and_gcp_notice_ids_carry_the_vm_identity_not_unknown():
    with AzureEmulator(AzureSettings(preempt_delay=0)) as az:
        azure = run_until_notice(az.url, AgentConfig(cloud="azure", **FAST), log=JsonLogger(io.StringIO()), timeout=60)
        vm_id = az.settings.vm_id
    with GcpEmulator(GcpSettings(preempt_delay=0)) as gcp:
        google = run_until_notice(gcp.url, AgentConfig(cloud="gcp", wait_seconds=1, **FAST),
                                  log=JsonLogger(io.StringIO()), timeout=60)
        instance_id = gcp.settings.instance_id
    assert azure.notice["id"].startswith(f"spot-interruption:{vm_id}:")
    assert google.notice["id"].startswith(f"spot-interruption:{instance_id}:")
    assert "unknown" not in azure.notice["id"] + google.notice["id"]
