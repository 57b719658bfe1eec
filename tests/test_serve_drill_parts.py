"""The serve drill's parts on their own: the model, the replica server, the load generator's records and
failure causes, its rate warning, the figures, the demo's hook. No balancer needed."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from spotkit.rehearsal.serving import analysis
from spotkit.rehearsal.serving.drill import InterruptionRecord, Replica, RunResult
from spotkit.rehearsal.serving.loadgen import LoadSettings, one_request, run_load
from spotkit.rehearsal.serving.model import BigramModel
from spotkit.rehearsal.serving.server import command as replica_command
from tests.support.network import free_port

ROOT = Path(__file__).resolve().parents[1]


class RawServer:
    """A socket server that answers every connection with ``reply`` bytes after ``hold`` seconds, then closes."""

    def __init__(self, reply: bytes, hold: float = 0.0):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.reply, self.hold = reply, hold
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn):
        with conn:
            conn.recv(65536)
            time.sleep(self.hold)
            conn.sendall(self.reply)

    def close(self):
        self.sock.close()


ITEM = {"i": 0, "offset": 0.0, "max_tokens": 5, "stream": True, "seed": 1}


def _wait_healthy(port: int, within: float = 60) -> None:
    deadline = time.time() + within
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"replica on {port} not healthy within {within} s")


@pytest.fixture(scope="module")
def replica():
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen(replica_command(port, "rx", token_seconds=0.005, load_seconds=0), env=env,
                            start_new_session=True, stderr=subprocess.DEVNULL)
    _wait_healthy(port)
    yield port, proc
    proc.terminate()
    proc.wait(timeout=30)


def test_model_is_seeded_and_gives_max_tokens_words():
    model = BigramModel()
    words = list(model.generate("The list", 12, seed=3))
    assert len(words) == 12 and words == list(model.generate("The list", 12, seed=3))
    assert words != list(model.generate("The list", 12, seed=4))
    assert all(w.strip() in model.vocab for w in words)


def test_replica_answers_completions_streaming_and_not(replica):
    port, _ = replica
    streamed = one_request("127.0.0.1", port, ITEM, timeout=10)
    assert streamed["cause"] is None and streamed["status"] == 200 and streamed["tokens"] == 5
    assert streamed["replica"] == "rx" and streamed["start"] <= streamed["first"] <= streamed["end"]
    whole = one_request("127.0.0.1", port, {**ITEM, "stream": False, "max_tokens": 7}, timeout=10)
    assert whole["cause"] is None and whole["tokens"] == 7
    with urllib.request.urlopen(urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/completions", method="POST",
            data=json.dumps({"prompt": "A class", "max_tokens": 3}).encode())) as resp:
        doc = json.loads(resp.read())
    assert doc["object"] == "text_completion" and doc["usage"]["completion_tokens"] == 3
    assert doc["choices"][0]["finish_reason"] == "length"


def test_replica_refuses_bad_requests_with_400(replica):
    port, _ = replica
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/completions", method="POST",
                                 data=json.dumps({"max_tokens": 0}).encode())
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req)
    assert err.value.code == 400


def test_replica_exits_on_sigterm_after_its_in_flight_request():
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen(replica_command(port, "ry", token_seconds=0.1, load_seconds=0), env=env,
                            start_new_session=True, stderr=subprocess.DEVNULL)
    try:
        _wait_healthy(port)
        deadline = time.time() + 60
        result = {}
        thread = threading.Thread(target=lambda: result.update(
            one_request("127.0.0.1", port, {**ITEM, "max_tokens": 20}, timeout=30)))
        thread.start()
        while time.time() < deadline and not result and not _has_connection(port):
            time.sleep(0.02)
        proc.terminate()  # GIVEN a request in flight, WHEN SIGTERM comes, THEN it finishes and the replica exits 0
        thread.join(timeout=60)
        assert proc.wait(timeout=60) == 0
        assert result["cause"] is None and result["tokens"] == 20
    finally:
        proc.kill()


def _has_connection(port: int) -> bool:
    """An established TCP connection to ``port`` (from /proc/net/tcp)."""
    hexport = f"{port:04X}"
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1].endswith(":" + hexport) and fields[3] == "01":
            return True
    return False


def test_failure_causes_are_told_apart():
    refused = one_request("127.0.0.1", free_port(), ITEM, timeout=5)
    assert refused["cause"] == "refused"
    cut = RawServer(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"1a\r\ndata: {\"choices\": []}\n\n\r\n")
    unavailable = RawServer(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbusy")
    short_json = RawServer(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\nConnection: close\r\n\r\n{\"id\": 1")
    try:
        streamed = one_request("127.0.0.1", cut.port, ITEM, timeout=5)
        assert streamed["cause"] == "stream-cut" and streamed["tokens"] == 1
        assert one_request("127.0.0.1", unavailable.port, ITEM, timeout=5)["cause"] == "5xx"
        assert one_request("127.0.0.1", unavailable.port, ITEM, timeout=5)["status"] == 503
        assert one_request("127.0.0.1", short_json.port, {**ITEM, "stream": False}, timeout=5)["cause"] == "stream-cut"
    finally:
        for server in (cut, unavailable, short_json):
            server.close()


def test_plan_is_seeded_poisson_and_open_loop():
    plan = LoadSettings(rate=10, duration=20, seed=1).plan()
    assert plan == LoadSettings(rate=10, duration=20, seed=1).plan()
    assert plan != LoadSettings(rate=10, duration=20, seed=2).plan()
    assert 120 < len(plan) < 280  # 200 expected
    assert all(0 < p["offset"] < 20 for p in plan) and [p["offset"] for p in plan] == sorted(p["offset"] for p in plan)


def test_a_load_generator_that_cannot_keep_its_rate_is_warned_about(tmp_path):
    from spotkit.cli.drill_serve import rate_warning

    slow = RawServer(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}", hold=0.3)
    try:
        # GIVEN one connection at a time to a server holding each request 0.3 s, WHEN 20 req/s are asked
        summary = run_load(f"http://127.0.0.1:{slow.port}", LoadSettings(rate=20, duration=0.5, seed=3,
                                                                         max_in_flight=1), time.time(),
                           str(tmp_path / "req.jsonl"))
    finally:
        slow.close()
    # THEN the achieved rate is under the asked one and the drill's warning says it, with a lower rate
    assert summary["achieved_rate"] < 0.95 * 20
    warning = rate_warning(summary, 20)
    assert warning.startswith(f"the load generator kept {summary['achieved_rate']:g} req/s of the 20 asked")
    lower = max(1, int(summary["achieved_rate"] * 0.8))
    assert warning.endswith(f"next: spotkit drill --workload serve --rate {lower}")
    assert rate_warning({"achieved_rate": 8.1, "lag_p95": 0.01}, 8) is None
    assert len((tmp_path / "req.jsonl").read_text().splitlines()) == summary["sent"]


def _run(requests, samples, interruptions) -> RunResult:
    return RunResult(mode="spotkit", settings={"replicas": 4, "notice_seconds": 5.0, "drain_seconds": 2.0},
                     load_started_at=0.0, load_ended_at=30.0, requests=requests, ready_samples=samples,
                     replicas=[Replica("r1", 0, "on-demand", launched_at=-5.0, ended_at=40.0),
                               Replica("r2", 1, "spot", launched_at=-5.0, ended_at=15.0),
                               Replica("r3", 1, "spot", launched_at=12.0)],
                     interruptions=interruptions, loadgen={"sent": len(requests)}, fallback_decisions=[],
                     balancer_port=0)


def test_figures_of_a_known_run():
    def req(start, end, cause=None, stream=True):
        return {"start": start, "first": start + 0.1, "end": end, "cause": cause, "stream": stream,
                "status": 503 if cause == "5xx" else 200}

    item = InterruptionRecord(index=0, replica="r2", position=1, wave=False, no_capacity=False, rebalance_at=9.0,
                              notice_at=10.0, reclaimed_at=15.0, exited_before_reclaim=True)
    requests = [req(2, 3), req(4, 5.5), req(11, 12), req(16, 16.2, "5xx"), req(14, 14.5, "stream-cut"), req(25, 26)]
    run = _run(requests, [(0.0, 4), (15.0, 3), (18.0, 4), (30.0, 4)], [item])
    s = analysis.summarize(run)
    # the window runs from the rebalance recommendation to the ready count back at 4 (after reclaim + drain)
    assert s["windows"] == [[9.0, 18.0]]
    assert s["seconds_below_target"] == 3.0
    assert s["requests"]["failed"] == 2 and s["requests"]["failed_inside_windows"] == 2
    assert s["requests"]["failed_by_cause"]["5xx"] == 1 and s["requests"]["failed_by_cause"]["stream-cut"] == 1
    assert s["latency"]["windows"]["n"] == 1 and s["latency"]["uninterrupted"]["n"] == 3
    assert s["replica_seconds"] == {"spot": 33.0, "on-demand": 30.0}
    cmp = analysis.compare({"spotkit": s, "after-preemption": {**s, "requests": {**s["requests"], "failed": 100}}})
    assert cmp["spotkit_failed_over_after_preemption"] == 0.02
    assert cmp["targets"]["spotkit_failed_at_most_1pct_of_after_preemption"] is False


def test_demo_runs_the_serve_drill_when_haproxy_is_there(monkeypatch, capsys):
    import click

    from spotkit.cli import demo_cmd
    from spotkit.errors import MissingDependencyError
    from spotkit.rehearsal.serving import balancer

    calls = []
    ctx = click.Context(click.Command("demo"))
    monkeypatch.setattr(balancer, "find_haproxy", lambda: "/usr/sbin/haproxy")
    timings: dict = {}
    demo_cmd._serve_drill(ctx, lambda **kw: calls.append(kw), 7, Path("out"), timings)
    assert calls == [{"workload": "serve", "seed": 7, "interruptions": demo_cmd.DEMO_SERVE_INTERRUPTIONS,
                      "out": str(Path("out") / "drill-serve")}]
    assert demo_cmd.DEMO_SERVE_INTERRUPTIONS == 3  # a wave and a reclaim with no spot capacity fit in 3
    assert "serve drill" in timings

    def missing():
        raise MissingDependencyError("no haproxy")

    monkeypatch.setattr(balancer, "find_haproxy", missing)
    demo_cmd._serve_drill(ctx, lambda **kw: calls.append(kw), 7, Path("out"), {})
    assert len(calls) == 1
    assert "serve drill: skipped (haproxy is not installed: sudo apt-get install -y haproxy)" in capsys.readouterr().out


def test_the_serve_drills_next_hint_works_when_pasted(tmp_path):
    from tests.test_cli_hints import sh
    from spotkit.cli.drill_serve import SERVE_NEXT

    done = sh(SERVE_NEXT + "   # the stack whose hand-off this rehearses", tmp_path)  # as the drill prints it
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "cdktf.out" / "stacks" / "gpu_inference" / "cdk.tf.json").is_file()
