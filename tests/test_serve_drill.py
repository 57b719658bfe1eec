"""The serve drill end to end on one machine: real replicas behind HAProxy, the agent, open-loop load.

Short configuration (about 15 s of load per run, one test so that one drill runs under pytest -n);
figures are asserted as relations of one seeded run, never as timings: spotkit fails no request, the no-agent baseline does, every spotkit replica is out of
the balancer and gone before its reclaim, and nothing is left running afterwards. Skipped, saying why,
where haproxy is not installed (CI installs it: Makefile and .ci/run).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from spotkit.rehearsal.serving import analysis
from spotkit.rehearsal.serving.balancer import find_haproxy
from spotkit.rehearsal.serving.drill import MODES, ServeDrillSettings, run_once, run_serve_drill
from spotkit.errors import MissingDependencyError, ToolkitError
from tests.support.cli import run_spotkit

ROOT = Path(__file__).resolve().parents[1]


def _haproxy_missing() -> bool:
    try:
        find_haproxy()
    except MissingDependencyError:
        return True
    return False


needs_haproxy = pytest.mark.skipif(_haproxy_missing(), reason="haproxy is not installed (apt-get install -y haproxy)")

# 4 reclaims in 3 interruptions: a single one, a wave of 2, a reclaim with no spot capacity.
SHORT = ServeDrillSettings(interruptions=4, seed=5, rate=6.0, tokens=(4, 14), warmup=2.0, gap_range=(1.5, 2.0),
                           tail=1.5, notice_seconds=4.0, rebalance_lead=1.0, rebalance_share=0.5, drain_seconds=1.0,
                           load_seconds=0.8, boot_seconds=0.3)


def _children(pid: int) -> set[int]:
    """Live descendants of ``pid`` (zombies excluded), from /proc."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z":
            parents[int(entry)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        nxt = {p for p, parent in parents.items() if parent in frontier} - found
        found |= nxt
        frontier = nxt
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


# --- the drill's figures: one test, so that one drill runs (pytest -n spreads a module's tests) -------

@needs_haproxy
def test_serve_drill_end_to_end(tmp_path):
    # GIVEN one seeded schedule and load, WHEN the three runs go through it
    before = _children(os.getpid())
    results = run_serve_drill(SHORT, tmp_path / "serve")
    drill = results, {m: analysis.summarize(r) for m, r in results.items()}, before
    # THEN (each check below names what it asserts)
    check_spotkit_fails_no_request_where_the_no_agent_baseline_does(drill)
    check_spotkit_replicas_hand_off_before_their_reclaim(drill)
    check_baselines_replace_after_the_reclaim(drill)
    check_the_wave_and_the_no_capacity_reclaim(drill)
    check_nothing_is_left_running_after_the_drill(drill)
    check_report_table_and_document(drill, tmp_path)


def check_spotkit_fails_no_request_where_the_no_agent_baseline_does(drill):
    results, s, _ = drill
    assert set(results) == set(MODES)
    for mode in MODES:  # THEN every run saw the same load and the same 4 reclaims
        assert s[mode]["requests"]["sent"] == s["spotkit"]["requests"]["sent"] > 20
        assert s[mode]["interruptions"] == 4 and s[mode]["waves"] == 1 and s[mode]["no_capacity_reclaims"] == 1
    # AND spotkit failed none, the no-agent baseline failed some, spotkit at most recovery-after-preemption's
    assert s["spotkit"]["requests"]["failed"] == 0, s["spotkit"]["requests"]
    assert s["no-agent"]["requests"]["failed"] > 0
    assert s["spotkit"]["requests"]["failed"] <= s["after-preemption"]["requests"]["failed"]
    cmp = analysis.compare(s)
    assert cmp["targets"]["spotkit_zero_failed"] and cmp["targets"]["no_agent_shows_failures"]


def check_spotkit_replicas_hand_off_before_their_reclaim(drill):
    results, s, _ = drill
    for item in results["spotkit"].interruptions:
        first_warning = item.rebalance_at or item.notice_at
        # the replacement is asked for at the recommendation or the notice, not at the reclaim
        assert first_warning <= item.replacement_requested_at < item.reclaimed_at, item
        # out of the balancer (drained, then maint), and the process gone, before the reclaim
        assert item.drain_started_at < item.out_of_balancer_at < item.reclaimed_at, item
        assert item.exited_before_reclaim and item.in_flight_at_reclaim == 0, item
        assert item.drain_reason in ("replacement-healthy", "drain-time-left")
    assert s["spotkit"]["exited_before_reclaim"] == 4


def check_baselines_replace_after_the_reclaim(drill):
    results, s, _ = drill
    for mode in ("no-agent", "after-preemption"):
        for item in results[mode].interruptions:
            assert item.replacement_requested_at >= item.reclaimed_at, (mode, item)
            assert not item.exited_before_reclaim
    # the baselines spend time below the target ready count; spotkit's replacement is there first
    assert s["no-agent"]["seconds_below_target"] > s["spotkit"]["seconds_below_target"]


def check_the_wave_and_the_no_capacity_reclaim(drill):
    results, _, _ = drill
    for mode, run in results.items():
        wave = [i for i in run.interruptions if i.wave]
        assert len(wave) == 2 and len({i.index for i in wave}) == 1
        assert abs(wave[0].notice_at - wave[1].notice_at) < 0.5  # one notice time for both
        no_cap = [i for i in run.interruptions if i.no_capacity]
        assert [i.replacement_lifecycle for i in no_cap] == ["on-demand"], mode
        # the handler's fallback decided it (toolkit.interruption.fallback.fall_back)
        assert [d["decision"] for d in run.fallback_decisions] == ["raised"], run.fallback_decisions
        assert run.fallback_decisions[0]["classified"] == "spot-capacity"
        assert run.fallback_decisions[0]["on_demand_base_after"] == 1
        others = [i for i in run.interruptions if not i.no_capacity]
        assert all(i.replacement_lifecycle == "spot" for i in others)


def check_nothing_is_left_running_after_the_drill(drill):
    results, _, before = drill
    pids = [pid for run in results.values() for pid in run.pids]
    assert len(pids) >= 3 * (SHORT.replicas + 2)  # replicas, balancer, load generator per run
    assert [pid for pid in pids if _alive(pid)] == []
    assert _children(os.getpid()) - before == set()


def check_report_table_and_document(drill, tmp_path):
    from spotkit.rehearsal.serving.report import document, plot, render_table

    results, _, _ = drill
    doc = document(results)
    table = render_table(doc)
    assert "spotkit (agent hand-off)" in table and "no agent (health checks)" in table
    assert doc["runs"]["spotkit"]["timeline"]["ready"], "ready replicas sampled"
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return  # the plot is the optional 'plot' extra
    assert plot(results, doc, tmp_path / "drill.png").stat().st_size > 10_000


# --- faults ---------------------------------------------------------------------------------------

@needs_haproxy
def test_a_replica_that_never_gets_healthy_is_one_error_and_leaves_nothing(tmp_path):
    from dataclasses import replace

    before = _children(os.getpid())
    settings = replace(SHORT, load_seconds=60.0, ready_timeout=1.5)
    with pytest.raises(ToolkitError) as err:
        run_once("no-agent", settings, tmp_path)
    assert "did not get healthy in the balancer within 2 s" in err.value.message
    assert err.value.hint.startswith(f"cat {tmp_path / 'no-agent' / 'replica-r1.log'}")
    assert _children(os.getpid()) - before == set()


@needs_haproxy
def test_port_in_use_is_one_error_with_a_next_step(capsys, tmp_path):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        run = run_spotkit(capsys, "drill", "--workload", "serve", "--port", str(port), "--out", str(tmp_path))
    assert run.code == 1 and "Traceback" not in run.err
    lines = [line for line in run.err.splitlines() if line.strip()]
    assert lines[0] == f"Error: port {port} is in use: the serve drill's load balancer cannot listen on it"
    assert run.next_lines == ["spotkit drill --workload serve --port 0   # any free port"]
    assert len(lines) == 2


def test_missing_haproxy_says_how_to_install_it(capsys, monkeypatch, tmp_path):
    from spotkit.rehearsal.serving import balancer

    monkeypatch.setattr(balancer.shutil, "which", lambda name: None)
    monkeypatch.setattr(balancer, "FALLBACK_PATHS", ())
    run = run_spotkit(capsys, "drill", "--workload", "serve", "--out", str(tmp_path))
    assert run.code == 1 and "Traceback" not in run.err
    lines = [line for line in run.err.splitlines() if line.strip()]
    assert lines[0].startswith("Error: the serve drill needs HAProxy") and "haproxy is not installed" in lines[0]
    assert run.next_lines == ["sudo apt-get install -y haproxy   # Debian/Ubuntu; then: spotkit drill --workload serve"]
    assert len(lines) == 2
    # the rest of spotkit works without it: the training drill's own validation still answers
    run = run_spotkit(capsys, "drill", "--interruptions", "-1", "--no-aws", "--out", str(tmp_path))
    assert run.code == 1 and "interruptions must be 0 or more" in run.err


def test_options_of_the_other_workload_are_refused(capsys, tmp_path):
    run = run_spotkit(capsys, "drill", "--workload", "serve", "--steps", "5", "--out", str(tmp_path))
    assert run.code == 1
    assert "--steps is an option of the training drill, not of --workload serve" in run.err
    assert run.next_lines == ["spotkit drill --workload serve"]
    run = run_spotkit(capsys, "drill", "--rate", "5", "--out", str(tmp_path))
    assert run.code == 1 and "--rate is an option of the serve drill: add --workload serve" in run.err


def test_settings_refuse_requests_longer_than_the_drain_window():
    with pytest.raises(ToolkitError) as err:
        ServeDrillSettings(tokens=(8, 64), drain_seconds=2.0).validate()
    assert "longer than the drain window (2.0 s): they would be cut" in err.value.message
    assert err.value.hint == "spotkit drill --workload serve --drain-seconds 4.3"


def test_a_wave_and_a_no_capacity_reclaim_need_three_interruptions():
    with pytest.raises(ToolkitError) as err:
        ServeDrillSettings(interruptions=2).validate()
    assert err.value.message == ("a wave of 2 and a separate no-capacity reclaim need 3 interruptions or more "
                                 "(got 2)")
    assert err.value.hint == "spotkit drill --workload serve --interruptions 3"
    events = ServeDrillSettings(interruptions=3).events()  # the no-capacity reclaim is never the wave
    assert [(len(e.positions), e.no_capacity) for e in events] == [(1, True), (2, False)]


def test_schedule_is_seeded_with_a_wave_and_a_no_capacity_reclaim():
    events = ServeDrillSettings(seed=3).events()
    assert events == ServeDrillSettings(seed=3).events()
    assert sum(len(e.positions) for e in events) == 6
    assert [e.wave for e in events].count(True) == 1 and [e.no_capacity for e in events].count(True) == 1
    assert all(0 not in e.positions for e in events)  # the on-demand base is never reclaimed
    no_cap = next(e for e in events if e.no_capacity)
    later = [p for e in events if e.index > no_cap.index for p in e.positions]
    assert no_cap.positions[0] not in later  # that position is on-demand from then on
    offsets = [e.notice_offset for e in events]
    assert offsets == sorted(offsets)


@needs_haproxy
def test_ctrl_c_leaves_no_process_behind(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    # (SIGINT back to its default in the child: a shell running CI in the background may have ignored it,
    # and Python only turns SIGINT into KeyboardInterrupt when it was not ignored)
    proc = subprocess.Popen([sys.executable, "-m", "spotkit.cli.main", "drill", "--workload", "serve",
                             "--out", str(tmp_path)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    seen: set[int] = set()
    # GIVEN the drill under load (the load generator's records are being written)
    while time.time() < deadline and not (tmp_path / "spotkit" / "requests.jsonl").exists():
        seen |= _children(proc.pid)
        assert proc.poll() is None, proc.stdout.read().decode()
        time.sleep(0.1)
    seen |= _children(proc.pid)
    assert len(seen) >= 6, "balancer, replicas and load generator started"
    # WHEN Ctrl-C reaches it
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    # THEN it exits and no process it started is left
    left = [pid for pid in seen if _alive(pid)]
    assert left == [], [Path(f"/proc/{p}/cmdline").read_bytes() for p in left]
    assert proc.returncode == 130 and "Interrupted (Ctrl-C) while working" in proc.stdout.read().decode()
