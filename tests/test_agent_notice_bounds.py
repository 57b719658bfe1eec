"""Notice times are bounded by their kind's real window (issue 25): a spot notice comes at most 120 s
ahead, a lifecycle notice at most the hook's heartbeat (AWS's longest is 7200 s), an Azure Terminate at
most 15 minutes; scheduled events are acted on ``maintenance_lead`` before their own time. A time past
its window (``2099-01-01``) is logged and clamped to first sight plus the window, so the hook's deadline
stays inside the real notice, the agent never blocks until killed, and the hook's children end with it."""

from __future__ import annotations

import io
import json
import os
import threading
import time

import pytest

from tests.support.agent_harness import emu  # noqa: F401 - a fixture
from tests.support.agent_harness import events, wait_for
from spotkit.runtime.agent import Agent, AgentConfig, ImdsClient, JsonLogger
from spotkit.runtime.agent.clouds import client_for
from spotkit.runtime.agent.notices import MAINTENANCE_PATH, SPOT_PATH
from spotkit.rehearsal.imds.azure import AzureEmulator, rfc1123
from spotkit.runtime.notice import parse_time

FAR = '{"action": "terminate", "time": "2099-01-01T00:00:00Z"}'


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_spot_time_far_in_the_future_is_logged_and_clamped_and_the_hook_is_bounded(emu, tmp_path):
    # GIVEN the spot path claims the instance goes away in 2099, and a hook that would run a minute
    emu.override(SPOT_PATH, body=FAR)
    log = JsonLogger(io.StringIO())
    agent = Agent(ImdsClient(emu.url), AgentConfig(on_notice="sleep 60", margin=118, kill_grace=0.5, interval=0.05,
                                                   complete_lifecycle=False), log=log, boot="b")
    got: dict = {}
    before = time.time()
    thread = threading.Thread(target=lambda: got.setdefault("result", agent.step()), daemon=True)
    # WHEN the agent drains
    thread.start()
    thread.join(timeout=90)
    # THEN it returned: the deadline was first sight + 120 s - margin, not 2099 - margin
    assert not thread.is_alive(), "the agent blocked on a notice time of 2099"
    result = got["result"]
    assert result.hook.killed is True
    assert result.deadline <= before + 120 - 118 + 1
    [clamped] = events(log, "notice-time-clamped")
    assert clamped["notice"]["time"] == "2099-01-01T00:00:00Z" and clamped["window_seconds"] == 120
    assert parse_time(clamped["clamped_to"]).timestamp() == result.deadline + 118
    assert result.notice["detail"]["time_given"] == "2099-01-01T00:00:00Z"
    # AND the notice keeps one id across polls (its key did not move with the clamp)
    assert agent.poll_once() == [] and result.notice["id"] in agent.handled


def test_the_hooks_children_do_not_outlive_the_agent(emu, tmp_path):
    # GIVEN a far-future spot time and a hook that leaves a child in its session and exits
    emu.override(SPOT_PATH, body=FAR)
    child = tmp_path / "child.pid"
    log = JsonLogger(io.StringIO())
    agent = Agent(ImdsClient(emu.url), AgentConfig(on_notice=f"sleep 300 & echo $! > {child}; exit 0",
                                                   interval=0.05, complete_lifecycle=False), log=log, boot="b")
    stop = threading.Event()
    thread = threading.Thread(target=agent.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for(lambda: agent.drained is not None and agent.drained.hook is not None, "the drain")
        pid = int(child.read_text())
        assert alive(pid)
        # WHEN the agent is asked to stop (systemd stopping the unit) before the hook's deadline
        stop.set()
        thread.join(timeout=30)
        # THEN the child left in the hook's session is gone with the agent
        wait_for(lambda: not alive(pid), "the hook's child to be killed")
    finally:
        stop.set()
        if child.exists() and alive(int(child.read_text())):
            os.kill(int(child.read_text()), 9)
    assert not thread.is_alive() and time.time() < agent.drained.deadline
    assert events(log, "hook-leftovers-killed")[0]["sessions"]


def test_a_maintenance_event_far_ahead_is_only_announced(emu):
    # scheduled events may come days ahead: the agent announces one in 2099 and acts maintenance_lead before it
    emu.override(MAINTENANCE_PATH, body=json.dumps([{"Code": "system-reboot", "EventId": "instance-event-1",
                                                      "NotBefore": "1 Jan 2099 00:00:00 GMT", "State": "active"}]))
    log = JsonLogger(io.StringIO())
    agent = Agent(ImdsClient(emu.url), AgentConfig(on_notice="true", interval=0.05), log=log, boot="b")
    assert agent.step() is None
    assert events(log, "notice-scheduled")[0]["acts_at"] == "2098-12-31T23:45:00Z"


def test_an_azure_terminate_past_fifteen_minutes_is_clamped():
    with AzureEmulator() as az:
        az.serve_events([{"EventId": "A1", "EventType": "Terminate", "ResourceType": "VirtualMachine",
                          "Resources": [az.settings.vm_name], "EventStatus": "Scheduled",
                          "NotBefore": rfc1123(4070908800), "Description": "", "EventSource": "Platform",
                          "DurationInSeconds": -1}])
        log = JsonLogger(io.StringIO())
        agent = Agent(client_for("azure", az.url), AgentConfig(cloud="azure", interval=0.05), log=log)
        (notice,) = agent.poll_once()
    [clamped] = events(log, "notice-time-clamped")
    assert clamped["window_seconds"] == 900 and notice.time.timestamp() - time.time() <= 900


def test_a_lifecycle_heartbeat_past_awss_longest_is_refused():
    with pytest.raises(ValueError, match=r"^lifecycle_heartbeat must be more than 0 and at most 7200 seconds, AWS's "
                                         r"longest lifecycle hook heartbeat \(got 2.27e\+09\)$"):
        AgentConfig(lifecycle_heartbeat=2.27e9)
