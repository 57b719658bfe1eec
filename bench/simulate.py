"""Speed of ``spotkit simulate``: a year of 5-minute ticks for a 16-replica service, target under 5 s.

The year is the real 16-node V100 trace (tests/fixtures/traces/aws-v100-16node-2023-08, 300 s ticks,
11 days) repeated to 365 days, so it has the real trace's rate of capacity changes. Timed: one
simulation of the stack policy (16 replicas: 4 on-demand + 12 spot in 2 AZs, the fallback on), and the
whole comparison a ``spotkit simulate`` run does (the stack, all on-demand, one zone, SpotHedge, and
each lever). The baseline is the same engine stepping every tick (``coalesce=False``: what a plain
tick loop costs, the same results); the target is absolute (5 s), as no other tool replays these traces.

Run: PYTHONPATH=. python bench/simulate.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from spotkit.runtime.interruption.fallback import FallbackPolicy  # noqa: E402
from spotkit.simulate import policy as pol  # noqa: E402
from spotkit.simulate import report  # noqa: E402
from spotkit.simulate.engine import Policy, simulate  # noqa: E402
from spotkit.simulate.traces import TraceSet, ZoneTrace, load_trace_dir  # noqa: E402

TRACE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "traces" / "aws-v100-16node-2023-08"
YEAR_TICKS = 365 * 24 * 12


def year_trace() -> TraceSet:
    ts = load_trace_dir(TRACE)
    out = TraceSet(name="year", path=str(TRACE), gap_seconds=300)
    for z, zt in ts.zones.items():
        reps = -(-YEAR_TICKS // len(zt.values))
        out.zones[z] = ZoneTrace(z, zt.label, zt.path, np.tile(zt.values, reps)[:YEAR_TICKS], zt.probe_size)
    return out


def main() -> int:
    ts = year_trace()
    zones = sorted(ts.zones)[:2]
    stack = Policy("stack", target=16, on_demand=4, spot_group=12, zones=tuple(zones), fallback=FallbackPolicy())
    t0 = time.perf_counter()
    r = simulate(stack, ts.capacity(zones), 300, keep_series=True)
    one = time.perf_counter() - t0
    hedge = Policy("spothedge", target=16, spot_group=20, zones=tuple(sorted(ts.zones)), dynamic_on_demand=True,
                   avoid_preempted_zones=True)
    timings = {}
    for name, p in (("stack", stack), ("spothedge", hedge)):
        for coalesce in (False, True):
            t0 = time.perf_counter()
            simulate(p, ts.capacity(list(p.zones)), 300, keep_series=False, coalesce=coalesce)
            timings[name, coalesce] = time.perf_counter() - t0
    sp = pol.StackPolicy(stack="gpu_inference", total=16, overprovision=0, on_demand=4, spot_group=12,
                         spot_group_base=0, spot_group_on_demand_percent=0, zones=["", ""], families=["g6"],
                         fallback=FallbackPolicy())
    t0 = time.perf_counter()
    rep = report.run(sp, [ts], {})
    whole = time.perf_counter() - t0
    runs = len(rep["traces"][0]["policies"]) + len(rep["traces"][0]["levers"])
    print(f"year of 5-minute ticks ({ts.ticks} ticks), 16 replicas, 3 zones")
    print(f"  one policy (stack):        {one:.2f} s  (availability {r.availability:.4f}, cost {r.cost_vs_on_demand:.3f})")
    print(f"  whole comparison ({runs} runs): {whole:.2f} s")
    for name in ("stack", "spothedge"):
        step, fast = timings[name, False], timings[name, True]
        print(f"  {name}: every tick stepped {step:.2f} s, settled stretches coalesced {fast:.2f} s "
              f"({step / fast:.1f}x)")
    print(f"  target: under 5 s -> {'met' if whole < 5 else 'NOT met'}")
    return 0 if whole < 5 else 1


if __name__ == "__main__":
    raise SystemExit(main())
