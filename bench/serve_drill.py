"""bench/serve_drill: what a spot reclaim costs an inference service, measured by the serve drill (issue 27).

Runs ``spotkit.rehearsal.serving.drill`` at its defaults (or the flags): 4 replicas (1 on-demand) of a real HTTP
inference server behind HAProxy, an open-loop Poisson load, 6 reclaims (one wave of 2, one with no spot
capacity), three ways on the same seeded schedule and load:

- **spotkit**: the agent's hand-off (replacement at the rebalance recommendation or notice, drain once it
  is healthy or when only the drain time is left, exit before the reclaim);
- **no agent**: the replica dies at the reclaim, the balancer finds out from failed health checks, the
  replacement starts after the reclaim (an ASG or ECS service without draining: what a user gets by
  default);
- **recover after preemption**: the balancer is told at the reclaim, the replacement starts then (how
  SkyPilot's serving recovers today, per its write-up).

The baselines are fair: same replicas, same balancer and health checks, same load (same seed), same
capacity and on-demand fallback; only when the replacement starts and when the balancer is told differ.

Checks the targets: spotkit 0 failed requests over >= 6 interruptions with the wave and the no-capacity
reclaim; its P99 latency inside interruption windows <= 1.5 x the P99 of the uninterrupted stretch; the
no-agent baseline fails requests; spotkit's failures <= 1 % of recover-after-preemption's; the whole
drill (three runs) within 3 minutes of wall time. Exits 1 when a target is missed.

    python -m bench.serve_drill [--seed 7] [--rate 8] [--json FILE] [--plot FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from spotkit.errors import MissingDependencyError
from spotkit.rehearsal.serving.balancer import find_haproxy
from spotkit.rehearsal.serving.drill import ServeDrillSettings, run_serve_drill
from spotkit.rehearsal.serving.report import document, render_table

WALL_TARGET_SECONDS = 180.0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--rate", type=float, default=8.0)
    p.add_argument("--json", help="write the drill document here")
    p.add_argument("--plot", help="draw the plot here (needs the 'plot' extra)")
    a = p.parse_args(argv)
    try:
        find_haproxy()
    except MissingDependencyError as exc:
        print(f"serve_drill: SKIPPED: {exc.message} ({exc.hint})")
        return 0
    settings = ServeDrillSettings(seed=a.seed, rate=a.rate)
    with tempfile.TemporaryDirectory(prefix="spotkit-serve-bench-") as tmp:
        started = time.monotonic()
        results = run_serve_drill(settings, Path(tmp), on_event=lambda msg: print(f"  {msg}", flush=True))
        wall = time.monotonic() - started
    doc = document(results)
    doc["wall_seconds"] = round(wall, 1)
    if a.json:
        Path(a.json).write_text(json.dumps(doc, indent=1, default=str))
    if a.plot:
        from spotkit.rehearsal.serving.report import plot

        plot(results, doc, Path(a.plot))
    print(render_table(doc))
    cmp = doc["compare"]
    targets = dict(cmp["targets"])
    targets["drill_within_3_minutes"] = wall <= WALL_TARGET_SECONDS
    sk = doc["runs"]["spotkit"]
    print(f"\nfailed: {cmp['failed']}; spotkit P99 windows/uninterrupted "
          f"{cmp['spotkit_p99_windows_over_uninterrupted']}; spotkit/after-preemption failures "
          f"{cmp.get('spotkit_failed_over_after_preemption')}")
    print(f"spotkit: {sk['exited_before_reclaim']}/{sk['interruptions']} replicas gone before their reclaim, "
          f"{sk['seconds_below_target']} s below {sk['target_ready']} ready; load generator "
          f"{sk['loadgen'].get('achieved_rate')} of {a.rate} req/s")
    print(f"wall time of the three runs: {wall:.1f} s (target <= {WALL_TARGET_SECONDS:.0f} s)")
    for name, ok in targets.items():
        print(f"  {'PASS' if ok else 'MISS'}  {name}")
    return 0 if all(targets.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
