"""The interruption agent against the IMDS emulator over HTTP (and moto for the lifecycle action).

No timed assertions: deadlines are checked through what happened (the hook was killed, the order of
steps), never through how long it took. Latency figures live in bench/interruptions_agent.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading

import pytest

from tests.support.agent_harness import emu  # noqa: F401 - a fixture
from tests.support.agent_harness import events, group_with_drain_hook, quiet_log, start_workload, stop_workload
from spotkit.rehearsal.local.control import completed_lifecycle_actions
from tests.support.network import free_port
from spotkit.runtime.agent import Agent, AgentConfig, ImdsClient, ImdsError, run_until_notice
from spotkit.runtime.agent.notices import LIFECYCLE, MAINTENANCE, REBALANCE, SPOT
from spotkit.rehearsal.imds.emulator import EmulatorSettings, ImdsEmulator

FAST = dict(interval=0.05, complete_lifecycle=False)


def test_spot_notice_runs_the_hook_once_with_the_notice_in_its_environment(emu, tmp_path):
    # GIVEN a spot notice 120 s ahead and a hook that records its environment
    notice = emu.interrupt("spot", lead_seconds=120)
    out = tmp_path / "env.json"
    hook = f"{sys.executable} -c 'import json, os; json.dump({{k: v for k, v in os.environ.items() " \
           f"if k.startswith(\"SPOTKIT_\")}}, open(\"{out}\", \"w\"))'"
    log = quiet_log()
    # WHEN the agent runs until the notice
    result = run_until_notice(emu.url, AgentConfig(on_notice=hook, margin=10, **FAST), log=log, timeout=30)
    # THEN the hook saw kind, time and deadline (notice time minus the margin)
    env = json.loads(out.read_text())
    assert env["SPOTKIT_NOTICE_KIND"] == SPOT
    assert env["SPOTKIT_NOTICE_TIME"] == notice["time"]
    assert env["SPOTKIT_NOTICE_ACTION"] == "terminate"
    assert float(env["SPOTKIT_DEADLINE_EPOCH"]) == pytest.approx(result.deadline, abs=0.001)
    assert env["SPOTKIT_NOTICE_ID"] == result.notice["id"]
    assert result.notice["kind"] == SPOT and result.notice["time"] == notice["time"]
    assert result.hook.returncode == 0 and result.hook.killed is False
    assert result.detected_at <= result.hook_started_at <= result.hook_finished_at
    # AND the log tells the story in order, as JSON lines
    lines = [json.loads(line) for line in log.stream.getvalue().splitlines()]
    assert [e["event"] for e in lines] == ["agent-started", "notice-detected", "hook-started", "hook-finished",
                                           "agent-stopped"]


def test_deadline_is_notice_time_minus_margin(emu, tmp_path):
    from datetime import datetime

    notice = emu.interrupt("spot", lead_seconds=100)  # within the 120 s window (a time past it is clamped)
    out = tmp_path / "deadline"
    result = run_until_notice(emu.url, AgentConfig(on_notice=f'echo "$SPOTKIT_DEADLINE" > {out}', margin=42, **FAST),
                              log=quiet_log(), timeout=30)
    notice_epoch = datetime.strptime(notice["time"] + "+0000", "%Y-%m-%dT%H:%M:%SZ%z").timestamp()
    assert result.deadline == notice_epoch - 42
    assert out.read_text().strip() == datetime.utcfromtimestamp(notice_epoch - 42).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_hook_running_past_the_deadline_is_killed(emu):
    # GIVEN a notice 3 s ahead, a 1 s margin, and a hook that would sleep a minute
    emu.interrupt("spot", lead_seconds=3)
    log = quiet_log()
    # WHEN the agent drains
    result = run_until_notice(emu.url, AgentConfig(on_notice="sleep 60", margin=1, **FAST), log=log, timeout=30)
    # THEN the hook was killed by SIGTERM (it did not ignore it), and the log says so
    assert result.hook.killed is True
    assert result.hook.returncode == -signal.SIGTERM
    assert events(log, "hook-finished")[0]["killed"] is True


def test_hook_ignoring_sigterm_gets_sigkill(emu):
    emu.interrupt("spot", lead_seconds=2)
    result = run_until_notice(
        emu.url, AgentConfig(on_notice="trap '' TERM; sleep 60 & wait; sleep 60", margin=1, kill_grace=0.3, **FAST),
        log=quiet_log(), timeout=30)
    assert result.hook.killed is True
    assert result.hook.returncode == -signal.SIGKILL


def test_workload_gets_sigterm_after_the_hook(emu, tmp_path):
    # GIVEN a workload in its own process group that records the signal it gets, and its pidfile
    marker = tmp_path / "got"
    workload = start_workload(marker)
    try:
        pidfile = tmp_path / "workload.pid"
        pidfile.write_text(str(workload.pid))
        emu.interrupt("spot", lead_seconds=120)
        # WHEN the agent drains
        result = run_until_notice(emu.url, AgentConfig(on_notice="true", workload_pidfile=str(pidfile), **FAST),
                                  log=quiet_log(), timeout=30)
        # THEN the workload's group got SIGTERM, after the hook finished
        assert workload.wait(timeout=10) == 0
        assert marker.exists()  # written by its SIGTERM handler
        assert result.signal.target == f"pidfile {pidfile} -> pgid {workload.pid}"
        assert result.hook_finished_at <= result.signal_sent_at
    finally:
        stop_workload(workload)


def test_missing_pidfile_is_logged_not_fatal(emu, tmp_path):
    emu.interrupt("spot")
    log = quiet_log()
    result = run_until_notice(emu.url, AgentConfig(workload_pidfile=str(tmp_path / "none.pid"), **FAST), log=log,
                              timeout=30)
    assert result.signal_sent_at is None
    [failed] = events(log, "signal-failed")
    assert failed["error"].startswith("reading the workload pid: FileNotFoundError")


def test_token_is_refreshed_before_it_expires(emu):
    # GIVEN a client asking for 60 s tokens, refreshed when less than 15 s remain, on a clock we move
    now = [1000.0]
    client = ImdsClient(emu.url, token_ttl=60, clock=lambda: now[0])
    assert client.get_text("/latest/meta-data/instance-id") == "i-0123456789abcdef0"
    # WHEN 40 s pass (token still valid) and then 50 s (inside the refresh window)
    now[0] += 40
    client.get_text("/latest/meta-data/instance-id")
    now[0] += 10
    client.get_text("/latest/meta-data/instance-id")
    # THEN one refresh happened before expiry, and the service never had to refuse a request
    assert client.token_fetches == 2
    assert emu.counters()["token_puts"] == 2
    assert emu.counters()["unauthorized"] == 0


def test_token_expired_on_the_service_is_replaced_after_one_401():
    # GIVEN a 1 s token, a service whose token clock then moves 2 s on, and a client whose clock does not
    # move (it believes the token is fresh)
    service_now = [0.0]
    with ImdsEmulator(EmulatorSettings(imdsv2_required=True), token_clock=lambda: service_now[0]) as emu:
        client = ImdsClient(emu.url, token_ttl=1, refresh_before=0, clock=lambda: 0.0)
        client.get_text("/latest/meta-data/instance-id")
        service_now[0] += 2.0
        # WHEN it reads again THEN the 401 makes it fetch a new token and retry once, successfully
        assert client.get_text("/latest/meta-data/instance-id") == "i-0123456789abcdef0"
        assert emu.counters()["unauthorized"] == 1
        assert client.token_fetches == 2


def test_imdsv1_fallback_only_when_allowed():
    # GIVEN an endpoint without the token API
    with ImdsEmulator(EmulatorSettings(token_api=False)) as emu:
        # WHEN v1 is not allowed THEN the read fails with the reason and the fix
        with pytest.raises(ImdsError) as err:
            ImdsClient(emu.url).get_text("/latest/meta-data/instance-id")
        assert str(err.value) == ("the IMDSv2 token request was refused (HTTP 404); allow IMDSv1 only if this "
                                  "endpoint cannot issue tokens")
        # WHEN v1 is allowed THEN the read works without a token
        assert ImdsClient(emu.url, allow_v1=True).get_text("/latest/meta-data/instance-id") == "i-0123456789abcdef0"


def test_connection_errors_and_500s_are_logged_and_polling_goes_on(emu):
    # GIVEN an outage: 12 dropped connections, then 4 errors, then a spot notice
    emu.interrupt("spot")
    with emu.state.lock:
        emu.state.outage_left, emu.state.outage_mode = 12, "drop"
    log = quiet_log()
    agent = Agent(ImdsClient(emu.url), AgentConfig(**FAST), log=log)
    # WHEN the agent polls through it
    assert agent.poll_once() == []
    with emu.state.lock:
        emu.state.outage_left, emu.state.outage_mode = 4, "500"
    assert agent.poll_once() == []
    notices = agent.poll_once()
    # THEN no exception escaped, each new error was logged with context once, and the notice still arrived
    assert [n.kind for n in notices] == [SPOT]
    errors = events(log, "poll-error")
    assert errors[0]["error"].startswith("checking for spot interruption notices: PUT ")
    assert any("HTTP 500" in e["error"] for e in errors)
    assert all(e["retryable"] is True for e in errors)
    assert {e["monitor"] for e in events(log, "poll-recovered")} >= {SPOT}


def test_agent_survives_a_metadata_service_that_is_not_there_yet(tmp_path):
    # GIVEN a port with nothing listening, and the agent already polling it
    port = free_port()
    log = quiet_log()
    holder: dict = {}
    stop = threading.Event()
    thread = threading.Thread(target=lambda: holder.setdefault("r", run_until_notice(
        f"http://127.0.0.1:{port}", AgentConfig(on_notice="true", **FAST), log=log, stop=stop, timeout=60)))
    thread.start()
    try:
        while not events(log, "poll-error"):
            stop.wait(0.05)
        # WHEN the service comes up and announces a spot interruption
        with ImdsEmulator(EmulatorSettings(spot_delay=0), port=port):
            thread.join(timeout=30)
    finally:
        stop.set()
        thread.join(timeout=5)
    # THEN the agent drained, after logging connection refused as a retryable error
    assert holder["r"].notice["kind"] == SPOT
    assert "ConnectionRefusedError" in events(log, "poll-error")[0]["error"]


def test_rebalance_runs_its_own_command_and_does_not_drain(emu, tmp_path):
    out = tmp_path / "rebalance"
    emu.interrupt("rebalance")
    log = quiet_log()
    agent = Agent(ImdsClient(emu.url), AgentConfig(on_notice=f"echo notice >> {out}",
                                                   on_rebalance=f'echo "$SPOTKIT_NOTICE_KIND" >> {out}', **FAST), log=log)
    # WHEN two polls see the same recommendation
    assert agent.step() is None
    assert agent.step() is None
    # THEN the rebalance command ran once, the notice hook never, and nothing was drained
    assert out.read_text() == f"{REBALANCE}\n"
    assert agent.drained is None
    assert [e["returncode"] for e in events(log, "rebalance-hook-finished")] == [0]


def test_spot_then_lifecycle_runs_the_hook_once_and_completes_the_action(aws, emu, tmp_path):
    # GIVEN an Auto Scaling group in moto with the spotkit-drain hook, named like the instance's tag
    asg = group_with_drain_hook(aws, "spotkit-training")
    out = tmp_path / "hook"
    log = quiet_log()
    agent = Agent(ImdsClient(emu.url), AgentConfig(on_notice=f"echo $SPOTKIT_NOTICE_KIND >> {out}", interval=0.05),
                  autoscaling=asg, log=log)
    # WHEN a spot notice arrives (the group is not terminating yet), then the group terminates the instance
    emu.interrupt("spot")
    first = agent.step()
    emu.interrupt("lifecycle")
    second = agent.step()
    # THEN the hook ran once, for the spot notice, and the lifecycle action was completed over HTTP, once
    assert out.read_text() == f"{SPOT}\n"
    assert first.lifecycle is None and second is None
    assert completed_lifecycle_actions() == [{
        "action": "CompleteLifecycleAction", "group": "spotkit-training", "hook": "spotkit-drain",
        "instance_id": "i-0123456789abcdef0", "token": None, "result": "CONTINUE"}]
    assert events(log, "notice-detected")[1]["note"] == "already drained: hook not run again"


def test_lifecycle_termination_drains_and_completes(aws, emu):
    asg = group_with_drain_hook(aws, "spotkit-training")
    emu.interrupt("lifecycle")
    result = run_until_notice(emu.url, AgentConfig(on_notice="true", interval=0.05, lifecycle_heartbeat=300),
                              autoscaling=lambda: asg, log=quiet_log(), timeout=30)
    assert result.notice["kind"] == LIFECYCLE
    assert result.lifecycle.error is None and result.lifecycle_completed_at is not None
    assert [c["result"] for c in completed_lifecycle_actions()] == ["CONTINUE"]


def test_lifecycle_error_is_logged_not_fatal(aws, emu):
    # GIVEN no group of that name in the account
    emu.interrupt("lifecycle")
    log = quiet_log()
    result = run_until_notice(emu.url, AgentConfig(interval=0.05), autoscaling=aws.client("autoscaling"), log=log,
                              timeout=30)
    assert result.lifecycle_completed_at is None
    [failed] = events(log, "lifecycle-failed")
    assert failed["error"].startswith("completing the lifecycle action of i-0123456789abcdef0 in spotkit-training: "
                                      "ClientError")
    assert "Group spotkit-training not found" in failed["error"]


def test_dry_run_signals_and_completes_nothing(aws, emu, tmp_path):
    asg = group_with_drain_hook(aws, "spotkit-training")
    workload = subprocess.Popen(["sleep", "60"], start_new_session=True)  # a group of its own: signalable
    pidfile = tmp_path / "pid"
    pidfile.write_text(str(workload.pid))
    emu.interrupt("lifecycle")
    log = quiet_log()
    try:
        result = run_until_notice(emu.url, AgentConfig(workload_pidfile=str(pidfile), dry_run=True, interval=0.05),
                                  autoscaling=asg, log=log, timeout=30)
        assert workload.poll() is None  # dry run: still running
    finally:
        workload.kill()
        workload.wait()
    assert result.signal.dry_run is True and result.signal_sent_at is None
    assert events(log, "would-have-signaled")[0]["signal"] == "SIGTERM"
    assert events(log, "would-have-completed-lifecycle")[0]["group"] == "spotkit-training"
    assert completed_lifecycle_actions() == []


def test_scheduled_maintenance_waits_for_its_lead_time(emu):
    # GIVEN a system-reboot one day ahead
    emu.interrupt("scheduled", lead_seconds=86400)
    log = quiet_log()
    agent = Agent(ImdsClient(emu.url), AgentConfig(on_notice="true", maintenance_lead=900, **FAST), log=log)
    # WHEN polled twice with a 15 min lead THEN it is announced once and nothing drains
    assert agent.step() is None and agent.step() is None
    assert len(events(log, "notice-scheduled")) == 1
    # WHEN the lead covers the day THEN it drains, with the maintenance event as the notice
    agent.config = AgentConfig(on_notice="true", maintenance_lead=2 * 86400, **FAST)
    result = agent.step()
    assert result.notice["kind"] == MAINTENANCE and result.notice["action"] == "system-reboot"
    assert result.notice["detail"]["EventId"] == "instance-event-0d59937288b749b32"


def test_state_file_keeps_a_restarted_agent_from_running_the_hook_again(emu, tmp_path):
    out, state = tmp_path / "hook", tmp_path / "state.json"
    emu.interrupt("spot")
    config = AgentConfig(on_notice=f"echo ran >> {out}", state_file=str(state), **FAST)
    assert Agent(ImdsClient(emu.url), config, log=quiet_log()).step() is not None
    # WHEN a new agent (systemd restart) polls the same notice
    restarted = Agent(ImdsClient(emu.url), config, log=quiet_log())
    assert restarted.step() is None
    # THEN the hook ran once in total
    assert out.read_text() == "ran\n"
    assert json.loads(state.read_text())["drained_until"] > 0


def test_notice_id_is_deterministic(emu):
    emu.interrupt("spot")
    a = Agent(ImdsClient(emu.url), AgentConfig(**FAST), log=quiet_log()).poll_once()
    b = Agent(ImdsClient(emu.url), AgentConfig(**FAST), log=quiet_log()).poll_once()
    assert [n.id for n in a] == [n.id for n in b]
    assert a[0].id.startswith("spot-interruption:i-0123456789abcdef0:")


def test_config_rejects_two_workload_targets():
    with pytest.raises(ValueError) as err:
        AgentConfig(workload_pgid=1, workload_pidfile="/run/x.pid")
    assert str(err.value) == "give workload_pgid or workload_pidfile, not both"


# --- CLI -------------------------------------------------------------------------------------------

def test_cli_agent_once_logs_json_lines(emu, tmp_path):
    emu.interrupt("spot")
    proc = subprocess.run(
        [sys.executable, "-m", "spotkit.cli.main", "agent", "--metadata-url", emu.url, "--on-notice", "echo hi",
         "--interval", "0.05", "--once", "--no-complete-lifecycle"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    finished = [e for e in lines if e["event"] == "hook-finished"]
    assert finished[0]["output_tail"] == "hi\n" and finished[0]["returncode"] == 0


def test_cli_agent_bad_metadata_url_is_a_user_error():
    proc = subprocess.run([sys.executable, "-m", "spotkit.cli.main", "agent", "--metadata-url", "ftp://x", "--once"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == ["Error: metadata URL must look like http://HOST[:PORT] (got 'ftp://x')",
                                        "  next: spotkit agent --help lists the options"]


def test_cli_imds_mock_serves_until_stopped():
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "spotkit.cli.main", "imds-mock", "--port", str(port),
                             "--spot-delay", "0", "--spot-action", "stop"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == f"IMDS emulator on http://127.0.0.1:{port} (IMDSv2 optional)"
        body = ImdsClient(f"http://127.0.0.1:{port}").get_text("/latest/meta-data/spot/instance-action")
        assert json.loads(body)["action"] == "stop"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)


def test_lifecycle_is_completed_only_after_the_signaled_workload_exits(aws, emu, tmp_path):
    # GIVEN a workload that checkpoints for a moment on SIGTERM before exiting, and a terminating group
    asg = group_with_drain_hook(aws, "spotkit-training")
    marker = tmp_path / "checkpoint"
    workload = start_workload(marker, checkpoint_seconds=0.3)
    try:
        emu.interrupt("lifecycle")
        log = quiet_log()
        # WHEN the agent drains
        result = run_until_notice(emu.url, AgentConfig(workload_pgid=workload.pid, interval=0.05),
                                  autoscaling=asg, log=log, timeout=30)
        # THEN it saw the workload exit (checkpoint written) before it let the group terminate the instance
        assert marker.exists()  # written after its 0.3 s checkpoint
        assert result.signal_sent_at <= result.workload_exited_at <= result.lifecycle_completed_at
        assert [e["event"] for e in log.events if e["event"].startswith(("workload-", "lifecycle-"))] == [
            "workload-signaled", "workload-exited", "lifecycle-completed"]
        assert len(completed_lifecycle_actions()) == 1
    finally:
        stop_workload(workload)


def test_workload_ignoring_sigterm_is_given_up_at_the_deadline_and_the_action_completed(aws, emu):
    # GIVEN a workload that ignores SIGTERM, a 3 s lifecycle heartbeat and a 1 s margin
    asg = group_with_drain_hook(aws, "spotkit-training")
    workload = start_workload(ignore_sigterm=True)
    try:
        emu.interrupt("lifecycle")
        log = quiet_log()
        result = run_until_notice(emu.url, AgentConfig(workload_pgid=workload.pid, interval=0.05, margin=1,
                                                       lifecycle_heartbeat=3), autoscaling=asg, log=log, timeout=30)
        # THEN the agent stopped waiting at the deadline, said so, and still completed the action
        assert result.workload_exited_at is None
        assert events(log, "workload-still-running")[0]["target"] == f"pgid {workload.pid}"
        assert result.lifecycle_completed_at is not None
        assert workload.poll() is None  # the agent does not SIGKILL the workload: the instance's shutdown will
    finally:
        stop_workload(workload)


def test_spot_hibernate_runs_the_hook_but_leaves_the_workload_running(emu, tmp_path):
    # GIVEN a hibernate notice and a workload pid (our own: a signal would be visible as a failure)
    pidfile = tmp_path / "pid"
    pidfile.write_text(str(os.getpid()))
    emu.interrupt("spot", action="hibernate")
    log = quiet_log()
    result = run_until_notice(emu.url, AgentConfig(on_notice="true", workload_pidfile=str(pidfile), **FAST), log=log,
                              timeout=30)
    # THEN the hook ran, and no signal was sent: the instance resumes with the workload's memory
    assert result.hook.returncode == 0
    assert result.signal is None and result.signal_sent_at is None
    assert events(log, "signal-skipped")[0]["reason"] == ("spot hibernate: memory is preserved, the workload "
                                                          "resumes with it")
