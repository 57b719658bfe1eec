"""bench/clouds_agent: how fast the agent sees a GCP preemption and an Azure Preempt event, and what it asks.

Against the GCP and Azure emulators (``toolkit/rehearsal/imds/{gcp,azure}.py``), in one run:

- GCP latency: from ``instance/preempted`` turning ``TRUE`` to the hook *running* (``date +%s.%N >
  FILE``), over ``--runs`` preemptions at a random phase of the poll interval, for the agent's hanging GET
  (``wait_for_change``) and for its polling fallback (an emulator refusing hanging GETs). Baseline, same
  interval: the shell loop of GCP's documentation (``curl -H 'Metadata-Flavor: Google' .../preempted``
  every interval, ``TRUE`` -> hook).
- Azure latency: ``Preempt`` event posted -> hook running (the agent polls Scheduled Events), and hook
  finished -> ``StartRequests`` recorded at the emulator (the acknowledgement).
- idle requests per minute to the metadata server: hanging GET vs polling, both paths.

    python -m bench.clouds_agent [--runs 20] [--interval 0.5] [--idle-seconds 20]
"""

from __future__ import annotations

import argparse
import io
import random
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from bench.interruptions_agent import pct
from spotkit.runtime.agent import Agent, AgentConfig, JsonLogger, run_until_notice
from spotkit.runtime.agent.clouds import client_for
from spotkit.rehearsal.imds.azure import AzureEmulator
from spotkit.rehearsal.imds.gcp import GcpEmulator, GcpSettings

CURL_LOOP = """
while true; do
  if curl -s -H "Metadata-Flavor: Google" {url}/computeMetadata/v1/instance/preempted | grep -q TRUE; then
    {hook}; exit 0
  fi
  sleep {interval}
done
"""


def _wait(condition) -> None:
    end = time.monotonic() + 60
    while not condition():
        if time.monotonic() > end:
            raise TimeoutError("the client never reached the emulator")
        time.sleep(0.002)


def gcp_agent(emu: GcpEmulator, runs: int, interval: float, work: Path, tag: str) -> list[float]:
    out = []
    for i in range(runs):
        emu.reset()
        stamp = work / f"{tag}-{i}"
        before = emu.counters()
        config = AgentConfig(cloud="gcp", on_notice=f"date +%s.%N > {stamp}", interval=interval, margin=0,
                             wait_seconds=30)
        thread = threading.Thread(target=lambda: run_until_notice(emu.url, config, log=JsonLogger(io.StringIO()),
                                                                  timeout=60))
        thread.start()
        if emu.settings.wait_for_change:  # the agent's hanging GET is outstanding
            _wait(lambda: emu.counters()["hanging_gets"] > before["hanging_gets"])
        else:  # the agent has fallen back to polling
            _wait(lambda: emu.counters()["wait_refused"] > before["wait_refused"])
        time.sleep(random.uniform(0, interval))
        t0 = time.time()
        emu.interrupt("preempt")
        thread.join()
        out.append(float(stamp.read_text()) - t0)
    return out


def gcp_curl(emu: GcpEmulator, runs: int, interval: float, work: Path) -> list[float]:
    out = []
    for i in range(runs):
        emu.reset()
        stamp = work / f"curl-{i}"
        before = emu.counters()["requests"]
        proc = subprocess.Popen(["bash", "-c", CURL_LOOP.format(url=emu.url, interval=interval,
                                                                 hook=f"date +%s.%N > {stamp}")])
        _wait(lambda: emu.counters()["requests"] > before)
        time.sleep(random.uniform(0, interval))
        t0 = time.time()
        emu.interrupt("preempt")
        proc.wait(timeout=60)
        out.append(float(stamp.read_text()) - t0)
    return out


def azure_agent(runs: int, interval: float, work: Path) -> tuple[list[float], list[float]]:
    hook, ack = [], []
    for i in range(runs):
        with AzureEmulator() as az:
            stamp = work / f"azure-{i}"
            config = AgentConfig(cloud="azure", on_notice=f"date +%s.%N > {stamp}", interval=interval, margin=0)
            holder: dict = {}
            thread = threading.Thread(target=lambda: holder.setdefault("r", run_until_notice(
                az.url, config, log=JsonLogger(io.StringIO()), timeout=60)))
            thread.start()
            _wait(lambda: az.snapshot()["counters"]["requests"] >= 1)
            time.sleep(random.uniform(0, interval))
            t0 = time.time()
            az.interrupt("preempt", lead_seconds=30)
            thread.join()
            hook.append(float(stamp.read_text()) - t0)
            ack.append(az.snapshot()["start_requests"][0]["at"] - holder["r"].hook_finished_at)
    return hook, ack


def idle_requests(settings: GcpSettings, seconds: float, interval: float) -> float:
    """Requests per minute an idle agent makes to the GCP metadata server."""
    with GcpEmulator(settings) as emu:
        stop = threading.Event()
        agent = Agent(client_for("gcp", emu.url), AgentConfig(cloud="gcp", interval=interval, wait_seconds=10),
                      log=JsonLogger(io.StringIO()))
        thread = threading.Thread(target=agent.run, args=(stop,))
        thread.start()
        time.sleep(2)
        r0, t0 = emu.counters()["requests"], time.monotonic()
        time.sleep(seconds)
        r1, t1 = emu.counters()["requests"], time.monotonic()
        stop.set()
        emu.interrupt("preempt")  # release a hanging GET so the agent sees the stop at once
        thread.join(timeout=30)
    return 60 * (r1 - r0) / (t1 - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--interval", type=float, default=0.5)
    parser.add_argument("--idle-seconds", type=float, default=20.0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        with GcpEmulator() as emu:
            waiting = gcp_agent(emu, args.runs, args.interval, work, "wait")
            curl = gcp_curl(emu, args.runs, args.interval, work)
        with GcpEmulator(GcpSettings(wait_for_change=False)) as emu:
            polling = gcp_agent(emu, args.runs, args.interval, work, "poll")
        azure_hook, azure_ack = azure_agent(args.runs, args.interval, work)
    print(f"GCP preemption -> hook running, {args.runs} runs, poll interval {args.interval} s")
    print(f"  {'':34} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for name, values in (("agent, hanging GET", waiting), ("agent, polling fallback", polling),
                         ("curl loop (GCP docs)", curl)):
        print(f"  {name:34} {1000 * pct(values, 50):8.1f} {1000 * pct(values, 99):8.1f} {1000 * max(values):8.1f}")
    print(f"  ratio hanging GET / curl loop: p50 {pct(waiting, 50) / pct(curl, 50):.2f}  "
          f"p99 {pct(waiting, 99) / pct(curl, 99):.2f}")
    print(f"Azure Preempt -> hook running: p50 {1000 * pct(azure_hook, 50):.1f} ms, p99 "
          f"{1000 * pct(azure_hook, 99):.1f} ms (polling every {args.interval} s); hook finished -> StartRequests "
          f"recorded: p50 {1000 * pct(azure_ack, 50):.1f} ms")
    hanging = idle_requests(GcpSettings(), args.idle_seconds, args.interval)
    polled = idle_requests(GcpSettings(wait_for_change=False), args.idle_seconds, args.interval)
    print(f"GCP idle requests per minute (both paths, interval {args.interval} s, hanging GET up to 10 s): "
          f"hanging GET {hanging:.0f}, polling {polled:.0f}, ratio {hanging / polled:.2f}")


if __name__ == "__main__":
    main()
