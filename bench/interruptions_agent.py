"""bench/interruptions_agent: how fast the agent reacts to a notice, and what it costs while idle.

Against the IMDS emulator (IMDSv2 required), in one run:

- latency: from the moment a spot notice becomes visible to the moment the hook is *running* (the hook
  is ``date +%s.%N > FILE``), over ``--runs`` notices, each triggered at a random phase of the poll
  interval. The agent runs as a library in a thread (``run_until_notice``), watching all four paths.
- idle CPU: ``spotkit agent`` as its own process, polling for ``--idle-seconds`` with no notice; CPU
  time from /proc over wall time.

Baseline, same interval, same emulator: the shell loop from the AWS documentation that many user-data
scripts use (a token PUT and a ``curl`` of ``spot/instance-action`` per poll, one path only).

    python -m bench.interruptions_agent [--runs 40] [--interval 0.5] [--idle-interval 2] [--idle-seconds 20]
"""

from __future__ import annotations

import argparse
import io
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from spotkit.runtime.agent import AgentConfig, JsonLogger, run_until_notice
from spotkit.rehearsal.imds.emulator import EmulatorSettings, ImdsEmulator
from spotkit.runtime.notice import SPOT_NOTICE_SECONDS

ROOT = Path(__file__).resolve().parents[1]
CLK_TCK = os.sysconf("SC_CLK_TCK")

CURL_LOOP = """
while true; do
  T=$(curl -s -X PUT -H "X-aws-ec2-metadata-token-ttl-seconds: 21600" {url}/latest/api/token)
  if curl -sf -H "X-aws-ec2-metadata-token: $T" {url}/latest/meta-data/spot/instance-action >/dev/null; then
    {hook}; exit 0
  fi
  sleep {interval}
done
"""


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def _wait_first_request(emu: ImdsEmulator, before: int) -> None:
    while emu.counters()["requests"] <= before:
        time.sleep(0.002)


def _trigger(emu: ImdsEmulator, interval: float) -> float:
    time.sleep(random.uniform(0, interval))  # random phase against the poll loop
    t0 = time.time()
    emu.interrupt("spot", lead_seconds=SPOT_NOTICE_SECONDS)
    return t0


def latency_agent(emu: ImdsEmulator, runs: int, interval: float, workdir: Path) -> tuple[list[float], list[float]]:
    """(notice -> hook running, notice -> detected) per run, in seconds."""
    out, detect = [], []
    for i in range(runs):
        emu.reset()
        stamp = workdir / f"agent-{i}"
        before = emu.counters()["requests"]
        holder: dict = {}
        config = AgentConfig(on_notice=f"date +%s.%N > {stamp}", interval=interval, margin=0,
                             complete_lifecycle=False)
        thread = threading.Thread(target=lambda: holder.setdefault("r", run_until_notice(
            emu.url, config, log=JsonLogger(io.StringIO()), timeout=60)))
        thread.start()
        _wait_first_request(emu, before)
        t0 = _trigger(emu, interval)
        thread.join()
        out.append(float(stamp.read_text()) - t0)
        detect.append(holder["r"].detected_at - t0)
    return out, detect


def latency_curl(emu: ImdsEmulator, runs: int, interval: float, workdir: Path) -> list[float]:
    out = []
    for i in range(runs):
        emu.reset()
        stamp = workdir / f"curl-{i}"
        before = emu.counters()["requests"]
        proc = subprocess.Popen(["bash", "-c", CURL_LOOP.format(url=emu.url, interval=interval,
                                                                 hook=f"date +%s.%N > {stamp}")])
        _wait_first_request(emu, before)
        t0 = _trigger(emu, interval)
        proc.wait(timeout=60)
        out.append(float(stamp.read_text()) - t0)
    return out


def _cpu_seconds(pid: int, children: bool) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return (utime + stime + ((cutime + cstime) if children else 0)) / CLK_TCK


def idle_cpu(argv: list[str], seconds: float, children: bool, env: dict | None = None) -> tuple[float, float]:
    """(CPU % of one core, MiB resident) of a process left polling for ``seconds`` after a 3 s warm-up."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        time.sleep(3)
        c0, w0 = _cpu_seconds(proc.pid, children), time.monotonic()
        time.sleep(seconds)
        c1, w1 = _cpu_seconds(proc.pid, children), time.monotonic()
        with open(f"/proc/{proc.pid}/status") as fh:
            rss = next(int(l.split()[1]) for l in fh if l.startswith("VmRSS:")) / 1024
        return 100 * (c1 - c0) / (w1 - w0), rss
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--interval", type=float, default=0.5, help="poll interval of the latency runs")
    parser.add_argument("--idle-interval", type=float, default=2.0, help="poll interval of the idle runs (default 2)")
    parser.add_argument("--idle-seconds", type=float, default=20.0)
    args = parser.parse_args()

    with ImdsEmulator(EmulatorSettings(imdsv2_required=True)) as emu, tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        agent, detect = latency_agent(emu, args.runs, args.interval, work)
        curl = latency_curl(emu, args.runs, args.interval, work)
        print(f"notice -> hook running, {args.runs} runs, poll interval {args.interval} s, IMDSv2 required")
        print(f"  {'':28} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
        for name, values in (("spotkit agent (4 paths)", agent), ("curl loop (1 path)", curl)):
            print(f"  {name:28} {1000 * pct(values, 50):8.1f} {1000 * pct(values, 99):8.1f} {1000 * max(values):8.1f}")
        print(f"  ratio spotkit/curl: p50 {pct(agent, 50) / pct(curl, 50):.2f}  p99 {pct(agent, 99) / pct(curl, 99):.2f}")
        print(f"  spotkit split: notice -> detected p50 {1000 * pct(detect, 50):.1f} ms, detected -> hook running "
              f"p50 {1000 * statistics.median(a - d for a, d in zip(agent, detect)):.1f} ms")
        print(f"  floor for a uniformly random phase: mean {1000 * args.interval / 2:.0f} ms, "
              f"p99 {1000 * args.interval * 0.99:.0f} ms")

        emu.reset()  # no notice while idle
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        agent_cpu, agent_rss = idle_cpu(
            [sys.executable, "-m", "spotkit.cli.main", "agent", "--metadata-url", emu.url, "--on-notice", "true",
             "--interval", str(args.idle_interval), "--no-complete-lifecycle"], args.idle_seconds, False, env)
        curl_cpu, curl_rss = idle_cpu(
            ["bash", "-c", CURL_LOOP.format(url=emu.url, interval=args.idle_interval, hook="true")],
            args.idle_seconds, True)
        print(f"idle, poll interval {args.idle_interval} s, {args.idle_seconds:.0f} s measured")
        print(f"  spotkit agent: {agent_cpu:.2f} % of one core, {agent_rss:.0f} MiB resident")
        print(f"  curl loop:     {curl_cpu:.2f} % of one core (bash + curl children), {curl_rss:.0f} MiB (bash only)")
        print(f"  ratio spotkit/curl CPU: {agent_cpu / curl_cpu:.2f}" if curl_cpu else "  curl loop CPU below 1 tick")


if __name__ == "__main__":
    main()
