"""The serve drill, analysis side: figures from one run's raw observations (``spotkit.rehearsal.serving.drill``).

- requests sent / succeeded / failed, failures by cause (``refused``, ``reset``, ``5xx``, ``stream-cut``,
  ``timeout``, ``other``; see ``spotkit.rehearsal.serving.loadgen``);
- latency (start to last byte) and time to first token (streaming requests), P50/P90/P99 of the
  successful requests: over the
  whole run, inside interruption windows and in the uninterrupted stretch (requests that started
  outside every window);
- an **interruption window** runs from the first warning (rebalance recommendation or notice) to the
  later of the reclaim plus the drain time (requests started before it may still run) and the moment
  the ready count is back at the target;
- seconds below the target ready count (``replicas``), from the balancer's samples;
- replica-seconds on spot and on-demand, each replica from its instance's launch to its end, within the
  load's span (what the capacity costs);
- per interruption: whether the replica was out of the balancer and gone before the reclaim, and how
  many requests it still had at the reclaim.

Pure functions over dicts and lists: no processes, no printing.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

CAUSES = ("refused", "reset", "5xx", "stream-cut", "timeout", "other")


def percentiles(values: list[float]) -> dict:
    if not values:
        return {"p50": None, "p90": None, "p99": None, "n": 0}
    arr = np.asarray(values, dtype=float)
    return {"p50": round(float(np.percentile(arr, 50)), 4), "p90": round(float(np.percentile(arr, 90)), 4),
            "p99": round(float(np.percentile(arr, 99)), 4), "n": int(arr.size)}


def ready_back_at(samples: list[tuple[float, int]], after: float, target: int) -> Optional[float]:
    """The first sample time at or after ``after`` with ``target`` replicas ready or more."""
    for t, ready in samples:
        if t >= after and ready >= target:
            return t
    return None


def windows(run) -> list[tuple[float, float]]:
    """Interruption windows (epoch), one per interruption event (a wave is one window)."""
    s = run.settings
    by_event: dict[int, list] = {}
    for item in run.interruptions:
        by_event.setdefault(item.index, []).append(item)
    out = []
    for items in by_event.values():
        start = min(min(x for x in (i.rebalance_at, i.notice_at) if x is not None) for i in items)
        reclaim = max(i.reclaimed_at or i.notice_at + s["notice_seconds"] for i in items)
        back = ready_back_at(run.ready_samples, reclaim, s["replicas"])
        end = max(reclaim + s["drain_seconds"], back if back is not None else run.load_ended_at)
        out.append((start, min(end, run.load_ended_at)))
    return sorted(out)


def _inside(t: float, spans: list[tuple[float, float]]) -> bool:
    return any(lo <= t <= hi for lo, hi in spans)


def seconds_below(samples: list[tuple[float, int]], target: int, lo: float, hi: float) -> float:
    total = 0.0
    for (t0, ready), (t1, _) in zip(samples, samples[1:]):
        a, b = max(t0, lo), min(t1, hi)
        if b > a and ready < target:
            total += b - a
    return round(total, 3)


def replica_seconds(run) -> dict:
    out = {"spot": 0.0, "on-demand": 0.0}
    for rep in run.replicas:
        a = max(rep.launched_at, run.load_started_at)
        b = min(rep.ended_at or run.load_ended_at, run.load_ended_at)
        if b > a:
            out[rep.lifecycle] = out.get(rep.lifecycle, 0.0) + (b - a)
    return {k: round(v, 2) for k, v in out.items()}


def summarize(run) -> dict:
    """The figures of one run (see the module doc)."""
    reqs = run.requests
    spans = windows(run)
    ok = [r for r in reqs if r.get("cause") is None]
    failed = [r for r in reqs if r.get("cause") is not None]
    causes = {c: sum(1 for r in failed if r["cause"] == c) for c in CAUSES}
    statuses = sorted({r["status"] for r in failed if r.get("cause") == "5xx"})

    def lat(rs):
        return percentiles([r["end"] - r["start"] for r in rs])

    def ttft(rs):  # streaming requests: the first SSE event with text
        return percentiles([r["first"] - r["start"] for r in rs if r.get("stream") and r.get("first")])

    inside = [r for r in ok if _inside(r["start"], spans)]
    outside = [r for r in ok if not _inside(r["start"], spans)]
    failed_inside = sum(1 for r in failed if _inside(r["start"], spans))
    n_items = len(run.interruptions)
    s = run.settings
    return {
        "mode": run.mode,
        "requests": {"sent": len(reqs), "planned": run.loadgen.get("sent"), "succeeded": len(ok), "failed": len(failed),
                     "failed_share": round(len(failed) / len(reqs), 5) if reqs else None,
                     "failed_by_cause": causes, "failed_statuses": statuses,
                     "failed_inside_windows": failed_inside},
        "latency": {"all": lat(ok), "windows": lat(inside), "uninterrupted": lat(outside)},
        "ttft": {"all": ttft(ok), "windows": ttft(inside), "uninterrupted": ttft(outside)},
        "windows": [[round(a - run.load_started_at, 3), round(b - run.load_started_at, 3)] for a, b in spans],
        "window_seconds": round(sum(b - a for a, b in spans), 3),
        "target_ready": s["replicas"],
        "seconds_below_target": seconds_below(run.ready_samples, s["replicas"], run.load_started_at, run.load_ended_at),
        "min_ready": min((r for t, r in run.ready_samples if run.load_started_at <= t <= run.load_ended_at),
                         default=None),
        "replica_seconds": replica_seconds(run),
        "load_seconds": round(run.load_ended_at - run.load_started_at, 3),
        "loadgen": run.loadgen,
        "interruptions": n_items,
        "waves": len({i.index for i in run.interruptions if i.wave}),
        "no_capacity_reclaims": sum(1 for i in run.interruptions if i.no_capacity),
        "replacements_on_demand": sum(1 for i in run.interruptions if i.replacement_lifecycle == "on-demand"),
        "exited_before_reclaim": sum(1 for i in run.interruptions if i.exited_before_reclaim),
        "in_flight_at_reclaims": sum(i.in_flight_at_reclaim for i in run.interruptions),
        "drained_after_replacement_healthy": sum(1 for i in run.interruptions
                                                 if i.drain_reason == "replacement-healthy"),
        "fallback_decisions": run.fallback_decisions,
    }


def ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return None if a is None or not b else round(a / b, 4)


def compare(summaries: dict[str, dict]) -> dict:
    """spotkit against the baselines of the same run, and the issue's targets."""
    sk = summaries.get("spotkit")
    out: dict = {"failed": {m: s["requests"]["failed"] for m, s in summaries.items()}}
    if sk is None:
        return out
    p99w, p99u = sk["latency"]["windows"]["p99"], sk["latency"]["uninterrupted"]["p99"]
    out["spotkit_p99_windows_over_uninterrupted"] = ratio(p99w, p99u)
    b1, b2 = summaries.get("no-agent"), summaries.get("after-preemption")
    targets = {
        "spotkit_zero_failed": sk["requests"]["failed"] == 0,
        "spotkit_interruptions_at_least_6_with_wave_and_no_capacity": (
            sk["interruptions"] >= 6 and sk["waves"] >= 1 and sk["no_capacity_reclaims"] >= 1),
        "spotkit_p99_windows_within_1_5x": (out["spotkit_p99_windows_over_uninterrupted"] is not None
                                             and out["spotkit_p99_windows_over_uninterrupted"] <= 1.5),
    }
    if b1 is not None:
        targets["no_agent_shows_failures"] = b1["requests"]["failed"] > 0
    if b2 is not None:
        f2 = b2["requests"]["failed"]
        out["spotkit_failed_over_after_preemption"] = ratio(sk["requests"]["failed"], f2) if f2 else None
        targets["spotkit_failed_at_most_1pct_of_after_preemption"] = sk["requests"]["failed"] <= 0.01 * f2
    out["targets"] = targets
    return out


def timeline(run, bin_seconds: float = 1.0) -> dict:
    """Per-second series for the plot: requests started, failures, latency P50/P99 (by start), ready."""
    t0 = run.load_started_at
    n = int(np.ceil((run.load_ended_at - t0) / bin_seconds)) + 1
    started, failed = np.zeros(n), np.zeros(n)
    lat: list[list[float]] = [[] for _ in range(n)]
    for r in run.requests:
        k = int((r["start"] - t0) // bin_seconds)
        if 0 <= k < n:
            started[k] += 1
            if r.get("cause"):
                failed[k] += 1
            else:
                lat[k].append(r["end"] - r["start"])
    p50 = [float(np.percentile(x, 50)) if x else None for x in lat]
    p99 = [float(np.percentile(x, 99)) if x else None for x in lat]
    return {"t": [round(i * bin_seconds, 3) for i in range(n)], "rate": (started / bin_seconds).tolist(),
            "failed": failed.tolist(), "p50": p50, "p99": p99,
            "ready": [[round(t - t0, 3), r] for t, r in run.ready_samples if t0 <= t <= run.load_ended_at]}
