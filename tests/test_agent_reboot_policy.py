"""One reboot policy on every cloud (docs/agent.md, ``spotkit.runtime.notice.REBOOT_EVENTS``): AWS ``system-reboot``
/ ``instance-reboot`` and Azure ``Reboot`` / ``Redeploy`` take the machine down and bring it back with its
disks, but without its memory and processes. Each is drained like a terminal notice (checkpoint hook, then
the workload signal), never handed to the Auto Scaling group (no lifecycle completion), and on Azure
acknowledged when the event names this VM alone. Azure ``Freeze`` and GCP live migration keep memory and
stay advisory."""

from __future__ import annotations

import io

import pytest

from tests.support.agent_harness import events, start_workload, stop_workload
from spotkit.runtime.agent import Agent, AgentConfig, ImdsClient, JsonLogger, run_until_notice
from spotkit.runtime.agent.notices import MAINTENANCE
from spotkit.rehearsal.imds.azure import AzureEmulator
from spotkit.rehearsal.imds.emulator import EmulatorSettings, ImdsEmulator


class RecordingAutoScaling:
    """Stands in for boto3's client: records every lifecycle completion asked of it."""

    def __init__(self):
        self.calls = []

    def complete_lifecycle_action(self, **kwargs):
        self.calls.append(kwargs)
        return {}


@pytest.fixture()
def workload():
    """A workload that dies of SIGTERM."""
    proc = start_workload()
    yield proc
    stop_workload(proc)


@pytest.mark.parametrize("code", ["system-reboot", "instance-reboot"])
def test_aws_reboot_event_checkpoints_and_signals_but_never_completes_the_lifecycle_action(tmp_path, workload, code):
    out = tmp_path / "hook"
    with ImdsEmulator(EmulatorSettings(imdsv2_required=True)) as emu:
        # GIVEN a scheduled reboot within the maintenance lead, and an Auto Scaling client at hand
        emu.interrupt("scheduled", action=code, lead_seconds=600)
        autoscaling = RecordingAutoScaling()
        log = JsonLogger(io.StringIO())
        agent = Agent(ImdsClient(emu.url), AgentConfig(on_notice=f"echo $SPOTKIT_NOTICE_KIND > {out}",
                                                       workload_pgid=workload.pid, interval=0.05, group_name="g"),
                      autoscaling=autoscaling, log=log, boot="boot-1")
        result = agent.step()
    # THEN it drains as a reboot: the hook ran, the workload got SIGTERM, the group was not told to go on
    assert result.notice["kind"] == MAINTENANCE and result.notice["action"] == code
    assert result.notice["detail"]["reboot"] is True
    assert out.read_text().strip() == MAINTENANCE and workload.wait(timeout=30) != 0
    assert autoscaling.calls == [] and result.lifecycle is None


@pytest.mark.parametrize("kind, event_type", [("reboot", "Reboot"), ("redeploy", "Redeploy")])
def test_azure_reboot_and_redeploy_drain_like_aws_and_are_acknowledged(tmp_path, workload, kind, event_type):
    out = tmp_path / "hook"
    with AzureEmulator() as az:
        # GIVEN a Reboot (or Redeploy) of this VM, 15 minutes ahead (Azure's minimum notice)
        event = az.interrupt(kind, lead_seconds=900)
        log = JsonLogger(io.StringIO())
        result = run_until_notice(az.url, AgentConfig(cloud="azure", on_notice=f"echo $SPOTKIT_NOTICE_KIND > {out}",
                                                      workload_pgid=workload.pid, interval=0.05, margin=1,
                                                      maintenance_lead=900), log=log, timeout=60)
        snap = az.snapshot()
    # THEN the same policy as AWS: the hook ran, the workload was signaled, and (this VM alone) acknowledged so
    # the reboot comes sooner and the workload restarts sooner
    assert result.notice["kind"] == MAINTENANCE and result.notice["action"] == event_type
    assert result.notice["detail"]["reboot"] is True and "advisory" not in result.notice["detail"]
    assert out.read_text().strip() == MAINTENANCE and workload.wait(timeout=30) != 0
    assert [r["event_ids"] for r in snap["start_requests"]] == [[event["EventId"]]]
    assert not events(log, "advisory-hook-started")
