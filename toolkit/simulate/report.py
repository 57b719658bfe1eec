"""One simulation run: every compared policy and lever on every trace, as a JSON-ready report, its
text rendering and its plot. No printing here: the CLI renders."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional

from spotkit.simulate import policy as pol
from spotkit.simulate.engine import simulate
from spotkit.simulate.traces import TraceSet


def run(sp: pol.StackPolicy, traces: list[TraceSet], config: Mapping[str, Any],
        zones_override: Optional[list[str]] = None, *, keep_series: bool = False) -> dict:
    """Simulate the stack and the compared policies on each trace; return the report."""
    sim = pol.settings(config)
    override = zones_override or sim.get("zones")
    out: dict[str, Any] = {"stack": sp.stack, "target": sp.target, "replicas": sp.total,
                           "overprovision": sp.overprovision, "families": sp.families,
                           "fallback": None if sp.fallback is None else {
                               "max_on_demand_base": sp.fallback.max_on_demand_base,
                               "hold_minutes": sp.fallback.hold_minutes,
                               "check_every_minutes": sp.fallback.check_every_minutes},
                           "notes": list(sp.notes), "traces": []}
    series: dict[str, Any] = {}
    for ts in traces:
        trace_zones = sorted(ts.zones)
        zones = pol.map_zones(sp, trace_zones, list(override) if override else None)
        policies = pol.compared(sp, zones, trace_zones, sim)
        entry: dict[str, Any] = {"trace": ts.name, "path": ts.path, "gap_seconds": ts.gap_seconds,
                                 "ticks": ts.ticks, "days": round(ts.days, 2), "zones": zones,
                                 "trace_zones": trace_zones, "notes": list(ts.notes), "policies": [],
                                 "levers": []}
        results = {}
        for p in policies:
            r = simulate(p, ts.capacity(list(p.zones)), ts.gap_seconds, keep_series=keep_series)
            results[p.name] = r
            entry["policies"].append({**r.summary(), "description": p.description,
                                      "boot_seconds": p.boot_seconds, "spot_price_ratio": p.spot_price_ratio})
            if keep_series:
                series[f"{ts.name}/{p.name}"] = r
        base = results["stack"]
        for label, p in pol.levers(policies[0], sp, trace_zones):
            r = simulate(p, ts.capacity(list(p.zones)), ts.gap_seconds, keep_series=False)
            entry["levers"].append({"setting": label, **r.summary(),
                                    "availability_change": round(r.availability - base.availability, 6),
                                    "cost_change": round(r.cost_vs_on_demand - base.cost_vs_on_demand, 4)})
        hedge = results["spothedge"]
        entry["vs_spothedge"] = {
            "saving_gap_points": round(100 * (hedge.saving - base.saving), 1),
            "availability_gap_points": round(100 * (hedge.availability - base.availability), 2),
            "within_target": bool(hedge.saving - base.saving <= 0.05 and base.availability >= hedge.availability),
        }
        out["traces"].append(entry)
    if keep_series:
        out["_series"] = series
    return out


def render(report: Mapping[str, Any]) -> str:
    fb = report["fallback"]
    lines = [f"{report['stack']}: target {report['target']} ready of {report['replicas']} replicas; families "
             f"{', '.join(report['families']) or '-'}; fallback "
             + (f"ceiling {fb['max_on_demand_base']}, hold {fb['hold_minutes']} min, check every "
                f"{fb['check_every_minutes']} min" if fb else "off")]
    lines += [f"  note: {n}" for n in report["notes"]]
    for t in report["traces"]:
        lines.append("")
        lines.append(f"trace {t['trace']}: {t['days']} days of {t['gap_seconds']} s ticks; stack AZs -> "
                     f"{', '.join(t['zones'])} (traced: {', '.join(t['trace_zones'])})")
        lines += [f"  note: {n}" for n in t["notes"]]
        lines.append(f"  {'POLICY':14s} {'COST':>6s} {'SAVING':>7s} {'AVAIL':>8s} {'LONGEST':>9s} {'PREEMPT':>8s} "
                     f"{'FALLBACKS':>9s} {'FB OD-H':>8s}")
        for p in t["policies"]:
            lines.append(f"  {p['policy']:14s} {p['cost_vs_on_demand']:6.3f} {100 * p['saving']:6.1f}% "
                         f"{100 * p['availability']:7.2f}% {p['longest_shortfall_minutes']:7.0f} m "
                         f"{p['preemptions']:8d} {p['fallback_episodes']:9d} {p['fallback_on_demand_hours']:8.1f}")
        v = t["vs_spothedge"]
        lines.append(f"  vs SpotHedge: saving {v['saving_gap_points']:+.1f} points behind, availability "
                     f"{v['availability_gap_points']:+.2f} points ({'within' if v['within_target'] else 'outside'} "
                     "the 5-point target)")
        stack = next(p for p in t["policies"] if p["policy"] == "stack")
        for lv in t["levers"]:
            lines.append(f"  {lv['setting']}: availability {100 * stack['availability']:.2f}% -> "
                         f"{100 * lv['availability']:.2f}% at {100 * lv['cost_change'] / max(stack['cost_vs_on_demand'], 1e-9):+.1f}% cost")
    return "\n".join(lines)


def plot(report: Mapping[str, Any], path: str | Path) -> Optional[str]:
    """Write a plot of ready replicas and on-demand share per policy over each trace; return a note
    (None when written) when matplotlib is not installed."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "plot skipped: matplotlib is not installed (pip install 'spotkit[plot]')"
    import numpy as np

    series = report.get("_series") or {}
    traces = report["traces"]
    fig, axes = plt.subplots(2, len(traces), figsize=(7 * len(traces), 6), squeeze=False, sharex="col")
    for col, t in enumerate(traces):
        hours = None
        for p in t["policies"]:
            r = series.get(f"{t['trace']}/{p['policy']}")
            if r is None or r.ready is None:
                continue
            hours = np.arange(len(r.ready)) * t["gap_seconds"] / 3600
            axes[0][col].step(hours, r.ready, where="post", label=p["policy"], linewidth=0.8)
            axes[1][col].step(hours, r.on_demand_share, where="post", label=p["policy"], linewidth=0.8)
        axes[0][col].axhline(report["target"], color="black", linestyle=":", linewidth=0.8)
        axes[0][col].set_title(f"{t['trace']}: ready replicas (target {report['target']})")
        axes[1][col].set_title("on-demand share of running instances")
        axes[1][col].set_xlabel("hours")
        axes[0][col].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None
