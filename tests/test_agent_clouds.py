"""The agent on GCP and Azure, against their metadata emulators over HTTP (toolkit/rehearsal/imds/{gcp,azure}.py).

Each cloud: notice -> hook with the cloud's environment -> workload signalled; the metadata header is
required; a notice already present at start; GCP's hanging GET and its polling fallback; Azure's
acknowledgement (StartRequests, checked at the emulator) and DocumentIncarnation changes; ``--cloud auto``.
No timed assertions: waits are for conditions, with generous bounds.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from datetime import timedelta
from pathlib import Path

import pytest

from tests.support.agent_harness import events, quiet_log, start_workload, stop_workload, wait_for
from tests.support.network import free_port
from spotkit.runtime.agent import Agent, AgentConfig, run_until_notice
from spotkit.runtime.agent.clouds import client_for
from spotkit.runtime.agent.clouds.client import InstanceIdentity
from spotkit.runtime.agent.clouds.detect import CloudNotDetected, detect_cloud
from spotkit.runtime.agent.notices import MAINTENANCE, SPOT, iso
from spotkit.rehearsal.imds.azure import AzureEmulator, AzureSettings
from spotkit.rehearsal.imds.emulator import EmulatorSettings, ImdsEmulator
from spotkit.rehearsal.imds.gcp import GcpEmulator, GcpSettings
from spotkit.runtime.notice import parse_time

ROOT = Path(__file__).resolve().parents[1]
FAST = dict(interval=0.05, complete_lifecycle=False, margin=1.0)


def env_hook(out: Path) -> str:
    return (f"{sys.executable} -c 'import json, os; json.dump({{k: v for k, v in os.environ.items() "
            f"if k.startswith(\"SPOTKIT_\")}}, open(\"{out}\", \"w\"))'")


@pytest.fixture()
def workload(tmp_path):
    """A process in its own group that records SIGTERM and exits."""
    proc = start_workload(tmp_path / "got-sigterm")
    yield proc
    stop_workload(proc)


def raw(url: str, method: str = "GET", headers: dict | None = None, body: bytes | None = None):
    req = urllib.request.Request(url, method=method, headers=headers or {}, data=body)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read().decode(), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), dict(exc.headers)


def run_agent_in_thread(agent: Agent, stop: threading.Event) -> tuple[threading.Thread, dict]:
    out: dict = {}
    thread = threading.Thread(target=lambda: out.setdefault("result", agent.run(stop)), daemon=True)
    thread.start()
    return thread, out


# --- GCP -------------------------------------------------------------------------------------------

def test_gcp_refuses_requests_without_its_metadata_header():
    with GcpEmulator() as gcp:
        url = f"{gcp.url}/computeMetadata/v1/instance/preempted"
        assert raw(url)[0] == 403
        assert "Missing Metadata-Flavor:Google header" in raw(url)[1]
        assert raw(url, headers={"Metadata-Flavor": "Google", "X-Forwarded-For": "10.0.0.1"})[0] == 403
        status, body, headers = raw(url, headers={"Metadata-Flavor": "Google"})
        assert (status, body, headers["Metadata-Flavor"]) == (200, "FALSE", "Google")
        assert gcp.counters()["refused"] == 3
        # the agent's client sends the header; the AWS one does not, and is refused
        assert client_for("gcp", gcp.url).get_text("/computeMetadata/v1/instance/preempted") == "FALSE"
        assert client_for("azure", gcp.url).get("/computeMetadata/v1/instance/preempted").status == 403


def test_gcp_preemption_over_a_hanging_get_runs_the_hook_and_signals_the_workload(tmp_path, workload):
    # GIVEN an agent waiting on preempted with wait_for_change (a long hanging GET, short poll interval)
    with GcpEmulator() as gcp:
        out = tmp_path / "env.json"
        log = quiet_log()
        config = AgentConfig(cloud="gcp", on_notice=env_hook(out), workload_pgid=workload.pid, once=True,
                             wait_seconds=60, **FAST)
        agent = Agent(client_for("gcp", gcp.url), config, log=log)
        stop = threading.Event()
        thread, got = run_agent_in_thread(agent, stop)
        try:
            wait_for(lambda: gcp.counters()["hanging_gets"] >= 1, "the agent's hanging GET")
            # WHEN GCP preempts the VM
            gcp.interrupt("preempt")
            thread.join(timeout=60)
        finally:
            stop.set()
        result = got["result"]
        # THEN the outstanding hanging GET brought the notice: one plain GET at start, then no polling
        preempt = agent.monitors[0]
        assert preempt.plain_gets == 1 and preempt.hanging_gets >= 1
        assert gcp.counters()["hanging_gets"] == preempt.hanging_gets
        # the hook saw the GCP notice: time = detection + 30 s, deadline = time - margin
        env = json.loads(out.read_text())
        assert env["SPOTKIT_CLOUD"] == "gcp" and env["SPOTKIT_NOTICE_KIND"] == SPOT
        assert env["SPOTKIT_NOTICE_ACTION"] == "preempted"
        detected = parse_time(result.notice["detail"]["detected"])
        assert env["SPOTKIT_NOTICE_TIME"] == iso(detected + timedelta(seconds=30))
        assert parse_time(env["SPOTKIT_DEADLINE"]) == detected + timedelta(seconds=29)
        # and the workload got SIGTERM after the hook
        assert workload.wait(timeout=30) == 0 and workload.marker.exists()
        assert result.hook_finished_at <= result.signal_sent_at
        assert [e["event"] for e in log.events if e["event"] in ("notice-detected", "hook-started", "hook-finished",
                                                                "workload-signaled")] == [
            "notice-detected", "hook-started", "hook-finished", "workload-signaled"]


def test_gcp_without_hanging_gets_falls_back_to_polling():
    # GIVEN a metadata endpoint that refuses wait_for_change (a proxy)
    with GcpEmulator(GcpSettings(wait_for_change=False)) as gcp:
        log = quiet_log()
        agent = Agent(client_for("gcp", gcp.url), AgentConfig(cloud="gcp", once=True, **FAST), log=log)
        stop = threading.Event()
        thread, got = run_agent_in_thread(agent, stop)
        try:
            wait_for(lambda: events(log, "wait-for-change-fallback"), "the fallback")
            polls = agent.polls
            wait_for(lambda: agent.polls >= polls + 3, "polling after the fallback")
            # WHEN the VM is preempted
            gcp.interrupt("preempt")
            thread.join(timeout=60)
        finally:
            stop.set()
        # THEN the refusal was logged once, plain GETs found the notice, and the agent drained
        assert gcp.counters()["wait_refused"] == 1
        assert len(events(log, "wait-for-change-fallback")) == 1
        assert agent.monitors[0].plain_gets >= 4 and agent.monitors[0].mode == "polling"
        assert got["result"].notice["kind"] == SPOT


def test_gcp_preemption_already_present_at_start_is_drained_on_the_first_read(tmp_path):
    with GcpEmulator(GcpSettings(preempt_delay=0)) as gcp:
        out = tmp_path / "env.json"
        result = run_until_notice(gcp.url, AgentConfig(cloud="gcp", on_notice=env_hook(out), **FAST),
                                  log=quiet_log(), timeout=30)
        assert result.notice["kind"] == SPOT and json.loads(out.read_text())["SPOTKIT_CLOUD"] == "gcp"
        assert gcp.counters()["hanging_gets"] == 0  # seen by the first plain GET


def test_gcp_terminating_maintenance_drains_and_live_migration_is_only_advisory(tmp_path):
    with GcpEmulator() as gcp:
        log = quiet_log()
        advisory_out = tmp_path / "advisory.json"
        config = AgentConfig(cloud="gcp", once=True, on_advisory=env_hook(advisory_out), wait_seconds=1, **FAST)
        agent = Agent(client_for("gcp", gcp.url), config, log=log)
        stop = threading.Event()
        thread, got = run_agent_in_thread(agent, stop)
        try:
            gcp.interrupt("maintenance", "MIGRATE_ON_HOST_MAINTENANCE")
            wait_for(lambda: advisory_out.exists() and events(log, "advisory-hook-finished"), "the advisory hook")
            assert agent.drained is None  # a live migration drains nothing
            gcp.interrupt("maintenance", "TERMINATE_ON_HOST_MAINTENANCE")
            thread.join(timeout=60)
        finally:
            stop.set()
        assert json.loads(advisory_out.read_text())["SPOTKIT_NOTICE_ACTION"] == "MIGRATE_ON_HOST_MAINTENANCE"
        result = got["result"]
        assert result.notice["kind"] == MAINTENANCE and result.notice["action"] == "TERMINATE_ON_HOST_MAINTENANCE"


# --- Azure -----------------------------------------------------------------------------------------

def test_azure_refuses_requests_without_its_metadata_header():
    with AzureEmulator() as az:
        url = f"{az.url}/metadata/scheduledevents?api-version=2020-07-01"
        status, body, _ = raw(url)
        assert status == 400 and json.loads(body) == {"error": "Bad request. Required metadata header not specified"}
        assert raw(f"{az.url}/metadata/scheduledevents", headers={"Metadata": "true"})[0] == 400  # no api-version
        assert raw(url, headers={"Metadata": "true", "X-Forwarded-For": "10.0.0.1"})[0] == 400
        status, body, _ = raw(url, headers={"Metadata": "true"})
        assert status == 200 and json.loads(body) == {"DocumentIncarnation": 1, "Events": []}
        # an acknowledgement without the header is refused too, and acknowledges nothing
        assert raw(url, "POST", body=b'{"StartRequests": [{"EventId": "x"}]}')[0] == 400
        assert az.snapshot()["start_requests"] == [] and az.snapshot()["counters"]["refused"] == 4


# Records argv[2] in the Azure emulator's journal at argv[1] (POST /spotkit/mark).
MARK = ("import json, sys, urllib.request\n"
        "def mark(url, label):\n"
        "    req = urllib.request.Request(url + '/spotkit/mark', data=json.dumps({'label': label}).encode(), "
        "method='POST')\n"
        "    urllib.request.urlopen(req, timeout=10).read()\n")


@pytest.fixture()
def marking_workload(tmp_path):
    """A workload (own group) that, on SIGTERM, records "workload-sigterm" at the emulator, then exits."""
    procs = []

    def start(url: str) -> subprocess.Popen:
        code = MARK + ("import signal, time\n"
                       "signal.signal(signal.SIGTERM, lambda *a: (mark(sys.argv[1], 'workload-sigterm'), sys.exit(0)))\n"
                       "print('ready', flush=True)\n"
                       "time.sleep(120)\n")
        proc = subprocess.Popen([sys.executable, "-c", code, url], start_new_session=True, stdout=subprocess.PIPE)
        assert proc.stdout.readline().strip() == b"ready"
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_azure_preempt_runs_the_hook_signals_and_then_acknowledges(tmp_path, marking_workload):
    with AzureEmulator() as az:
        out = tmp_path / "env.json"
        log = quiet_log()
        workload = marking_workload(az.url)
        # GIVEN a Preempt event 30 s ahead, a hook and a workload that each record themselves at the emulator
        event = az.interrupt("preempt", lead_seconds=30)
        mark_py = tmp_path / "mark.py"
        mark_py.write_text(MARK + "mark(sys.argv[1], sys.argv[2])\n")
        hook = f"{env_hook(out)} && {sys.executable} {mark_py} {az.url} hook"
        # WHEN the agent drains
        result = run_until_notice(az.url, AgentConfig(cloud="azure", on_notice=hook, workload_pgid=workload.pid,
                                                      **FAST), log=log, timeout=60)
        # THEN the hook got the event's NotBefore as the notice time and the deadline from it
        env = json.loads(out.read_text())
        not_before = parse_time(event["NotBefore"])
        assert env["SPOTKIT_CLOUD"] == "azure" and env["SPOTKIT_NOTICE_KIND"] == SPOT
        assert env["SPOTKIT_NOTICE_ACTION"] == "Preempt"
        assert env["SPOTKIT_NOTICE_TIME"] == iso(not_before)
        assert parse_time(env["SPOTKIT_DEADLINE"]) == not_before - timedelta(seconds=1)
        assert result.hook.returncode == 0
        assert workload.wait(timeout=30) == 0
        # and the emulator's own journal has the hook, then the workload's SIGTERM, then one StartRequests
        # for this event (one record, in the order the emulator received them: no second clock)
        snap = az.snapshot()
        assert [(j["label"], j.get("event_ids")) for j in snap["journal"]] == [
            ("hook", None), ("workload-sigterm", None), ("start-requests", [event["EventId"]])]
        # the event is gone from the next document
        assert snap["events"] == [] and snap["incarnation"] == event["DocumentIncarnation"] + 1
        acked = events(log, "notice-acknowledged")
        assert [(a["event_id"], a["status"]) for a in acked] == [(event["EventId"], 200)]


def test_azure_preempt_already_present_at_start_is_drained_and_acknowledged():
    with AzureEmulator(AzureSettings(preempt_delay=0)) as az:
        result = run_until_notice(az.url, AgentConfig(cloud="azure", **FAST), log=quiet_log(), timeout=60)
        snap = az.snapshot()
        assert result.notice["detail"]["EventType"] == "Preempt"
        assert [r["event_ids"] for r in snap["start_requests"]] == [[result.notice["detail"]["EventId"]]]


def test_azure_incarnation_changes_advisory_events_and_a_later_preempt(tmp_path):
    with AzureEmulator() as az:
        log = quiet_log()
        advisory_out = tmp_path / "advisory.json"
        agent = Agent(client_for("azure", az.url),
                      AgentConfig(cloud="azure", once=True, on_advisory=env_hook(advisory_out), **FAST), log=log)
        stop = threading.Event()
        thread, got = run_agent_in_thread(agent, stop)
        try:
            wait_for(lambda: events(log, "scheduled-events-changed"), "the first document")
            # GIVEN a Freeze (a pause of seconds, memory kept): logged, advisory hook, no drain, no acknowledgement
            reboot = az.interrupt("freeze")
            wait_for(lambda: events(log, "advisory-hook-finished"), "the advisory hook")
            assert agent.drained is None and az.snapshot()["start_requests"] == []
            # WHEN the Freeze is withdrawn (new incarnation) and a Terminate comes later
            az.cancel(reboot["EventId"])
            wait_for(lambda: any(e["incarnation"] == reboot["DocumentIncarnation"] + 1 and e["events"] == []
                                 for e in events(log, "scheduled-events-changed")), "the withdrawal")
            terminate = az.interrupt("terminate", lead_seconds=60)
            thread.join(timeout=60)
        finally:
            stop.set()
        # THEN every incarnation was seen in order, the Terminate drained and was acknowledged
        seen = [e["incarnation"] for e in events(log, "scheduled-events-changed")]
        assert seen == sorted(seen) and seen[0] == 1 and terminate["DocumentIncarnation"] in seen
        assert json.loads(advisory_out.read_text())["SPOTKIT_NOTICE_ACTION"] == "Freeze"
        result = got["result"]
        assert (result.notice["kind"], result.notice["action"]) == (MAINTENANCE, "Terminate")
        assert [r["event_ids"] for r in az.snapshot()["start_requests"]] == [[terminate["EventId"]]]


# --- detection and the CLI -------------------------------------------------------------------------

def test_auto_detects_each_cloud_from_its_metadata_service():
    with GcpEmulator() as gcp, AzureEmulator() as az, ImdsEmulator(EmulatorSettings(imdsv2_required=True)) as aws:
        assert detect_cloud(gcp.url) == "gcp"
        assert detect_cloud(az.url) == "azure"
        assert detect_cloud(aws.url) == "aws"
    with pytest.raises(CloudNotDetected, match="answered as AWS, GCP or Azure"):
        detect_cloud(f"http://127.0.0.1:{free_port()}", timeout=0.5)


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "spotkit.cli.main", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_cli_agent_auto_on_gcp_logs_json_lines_with_the_cloud():
    with GcpEmulator(GcpSettings(preempt_delay=0)) as gcp:
        proc = _cli("agent", "--cloud", "auto", "--metadata-url", gcp.url, "--on-notice", "echo $SPOTKIT_CLOUD",
                    "--interval", "0.05", "--once")
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert lines[0]["event"] == "agent-started" and lines[0]["cloud"] == "gcp"
    finished = [e for e in lines if e["event"] == "hook-finished"]
    assert finished[0]["output_tail"] == "gcp\n"


def test_cli_agent_auto_on_azure_acknowledges_the_event():
    with AzureEmulator(AzureSettings(preempt_delay=0)) as az:
        proc = _cli("agent", "--cloud", "auto", "--metadata-url", az.url, "--on-notice", "echo $SPOTKIT_CLOUD",
                    "--interval", "0.05", "--once")
        snap = az.snapshot()
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert lines[0]["cloud"] == "azure"
    assert [e["output_tail"] for e in lines if e["event"] == "hook-finished"] == ["azure\n"]
    acked = [e for e in lines if e["event"] == "notice-acknowledged"]
    assert [r["event_ids"] for r in snap["start_requests"]] == [[acked[0]["event_id"]]]


def test_cli_agent_auto_with_no_metadata_service_is_a_user_error():
    url = f"http://127.0.0.1:{free_port()}"
    proc = _cli("agent", "--cloud", "auto", "--metadata-url", url, "--once")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert lines[0].startswith(f"Error: no metadata service at {url} answered as AWS, GCP or Azure")
    assert lines[1] == f"  next: spotkit agent --cloud aws|gcp|azure --metadata-url {url}"


@pytest.mark.parametrize("cloud, path, header, want", [
    ("gcp", "/computeMetadata/v1/instance/preempted", {"Metadata-Flavor": "Google"}, "TRUE"),
    ("azure", "/metadata/scheduledevents?api-version=2020-07-01", {"Metadata": "true"}, "Preempt"),
])
def test_cli_imds_mock_serves_each_cloud(cloud, path, header, want):
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-m", "spotkit.cli.main", "imds-mock", "--cloud", cloud, "--port",
                             str(port), "--spot-delay", "0"], stdout=subprocess.PIPE, text=True, env=env)
    try:
        first = proc.stdout.readline()
        assert f"metadata emulator on http://127.0.0.1:{port}" in first
        url = f"http://127.0.0.1:{port}{path}"
        assert raw(url)[0] in (400, 403)
        status, body, _ = raw(url, headers=header)
        assert status == 200 and want in body
        assert raw(f"http://127.0.0.1:{port}/spotkit/interrupt", "POST", body=b'{"kind": "preempt"}')[0] == 200
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)


def test_config_rejects_an_unknown_cloud():
    with pytest.raises(ValueError, match="cloud must be aws, gcp or azure"):
        AgentConfig(cloud="oracle")
    with pytest.raises(ValueError, match=r"notice_seconds must be more than 0 seconds \(got 0\)"):
        AgentConfig(cloud="gcp", notice_seconds=0)


def test_cloud_modules_run_on_python_39_with_the_standard_library_only(tmp_path):
    # the agent package and the emulators, alone in a fresh 3.9 interpreter: a GCP and an Azure drain
    if not shutil.which("pyenv"):
        pytest.skip("pyenv (Python 3.9) not installed")
    for package in ("runtime/agent", "rehearsal/imds"):  # laid out as installed: toolkit/ is spotkit/
        shutil.copytree(ROOT / "toolkit" / package, tmp_path / "spotkit" / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "toolkit" / "runtime" / "notice.py", tmp_path / "spotkit" / "runtime" / "notice.py")
    for marker in ("spotkit", "spotkit/runtime", "spotkit/rehearsal"):
        (tmp_path / marker / "__init__.py").write_text("")
    probe = (
        "import io, sys; sys.path.insert(0, sys.argv[1])\n"
        "from spotkit.runtime.agent import AgentConfig, JsonLogger, run_until_notice\n"
        "from spotkit.rehearsal.imds.gcp import GcpEmulator, GcpSettings\n"
        "from spotkit.rehearsal.imds.azure import AzureEmulator, AzureSettings\n"
        "with GcpEmulator(GcpSettings(preempt_delay=0)) as g:\n"
        "    r = run_until_notice(g.url, AgentConfig(cloud='gcp', interval=0.05), log=JsonLogger(io.StringIO()))\n"
        "    print(r.notice['kind'])\n"
        "with AzureEmulator(AzureSettings(preempt_delay=0)) as a:\n"
        "    r = run_until_notice(a.url, AgentConfig(cloud='azure', interval=0.05), log=JsonLogger(io.StringIO()))\n"
        "    print(r.notice['action'], len(a.snapshot()['start_requests']))\n"
        "print(sys.version_info[:2])\n")
    res = subprocess.run(["python3.9", "-I", "-S", "-c", probe, str(tmp_path)], capture_output=True, text=True,
                         env={**os.environ, "PYENV_VERSION": "3.9.18"}, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split("\n")[:3] == ["spot-interruption", "Preempt 1", "(3, 9)"]


def test_the_cloud_options_reach_the_config_with_each_clouds_margin():
    # both command lines are generated from toolkit.agent.options (tests/test_agent_options.py compares them)
    from spotkit.runtime.agent import options
    from spotkit.runtime.agent.cli import build_parser

    args = vars(build_parser().parse_args(["--cloud", "gcp", "--notice-seconds", "20"]))
    config = options.agent_config(args, options.resolve_cloud(args["cloud"], "http://unused"))
    assert (config.cloud, config.on_advisory, config.notice_seconds, config.wait_seconds) == ("gcp", None, 20.0, 10.0)
    assert (options.default_margin("aws"), options.default_margin("gcp"), options.default_margin("azure")) == (
        15.0, 5.0, 5.0)
    assert config.margin == 5.0
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--cloud", "oci"])


def test_a_metadata_service_not_there_yet_is_logged_and_polling_goes_on():
    # GIVEN an Azure agent started before its metadata service answers
    port = free_port()
    log = quiet_log()
    agent = Agent(client_for("azure", f"http://127.0.0.1:{port}"), AgentConfig(cloud="azure", once=True, **FAST),
                  log=log)
    stop = threading.Event()
    thread, got = run_agent_in_thread(agent, stop)
    try:
        wait_for(lambda: events(log, "poll-error"), "the first poll error")
        polls = agent.polls
        wait_for(lambda: agent.polls >= polls + 3, "polling after the error")
        # WHEN the service comes up with a Preempt event
        with AzureEmulator(AzureSettings(preempt_delay=0), port=port) as az:
            thread.join(timeout=60)
            snap = az.snapshot()
    finally:
        stop.set()
    # THEN the error was logged once (retryable), recovery logged, and the event drained and acknowledged
    errors = events(log, "poll-error")
    assert len(errors) == 1 and errors[0]["retryable"] is True and "Azure scheduled events" in errors[0]["error"]
    assert len(events(log, "poll-recovered")) == 1
    assert got["result"].notice["action"] == "Preempt" and len(snap["start_requests"]) == 1


def test_an_azure_event_keeps_its_notice_when_it_starts_and_is_new_when_rescheduled():
    # Azure empties NotBefore once an event has Started: still the same notice (its hook must not run twice)
    from datetime import datetime, timezone

    from spotkit.runtime.agent.clouds.azure import AzureScheduledEventsMonitor

    def doc(incarnation, status, not_before):
        return json.dumps({"DocumentIncarnation": incarnation, "Events": [{
            "EventId": "C7061BAC-AFDC-4513-B24B-AA5F13A16123", "EventType": "Reboot", "ResourceType": "VirtualMachine",
            "Resources": ["vm1"], "EventStatus": status, "NotBefore": not_before, "Description": "",
            "EventSource": "Platform", "DurationInSeconds": 5}]})

    monitor = AzureScheduledEventsMonitor(None, identity=InstanceIdentity(lambda: ("vm1-id", "vm1")))
    now = datetime(2026, 11, 29, 20, 0, tzinfo=timezone.utc)
    (scheduled,) = monitor.parse(doc(2, "Scheduled", "Sun, 29 Nov 2026 20:15:00 GMT"), now)
    (started,) = monitor.parse(doc(3, "Started", ""), now)
    (moved,) = monitor.parse(doc(4, "Scheduled", "Sun, 29 Nov 2026 20:30:00 GMT"), now)
    assert scheduled.id == started.id and started.time == scheduled.time
    assert moved.id != scheduled.id and moved.time.minute == 30
    # (a Reboot drains: the VM comes back but its processes do not; one reboot policy with AWS's system-reboot)
    assert scheduled.detail["reboot"] is True and "advisory" not in scheduled.detail
    assert started.detail["EventStatus"] == "Started"


def test_aws_paths_are_not_asked_of_another_clouds_metadata_service():
    from spotkit.runtime.agent.clouds import bind_monitors

    with AzureEmulator() as az:
        reader, monitors = bind_monitors(AgentConfig(cloud="azure"), client_for("azure", az.url), quiet_log())
        before = az.snapshot()["counters"]["requests"]
        assert reader.get_text("/latest/meta-data/instance-id") is None
        assert az.snapshot()["counters"]["requests"] == before
        assert json.loads(reader.get_text(monitors[0].path))["Events"] == []
        assert az.snapshot()["counters"]["requests"] == before + 1
