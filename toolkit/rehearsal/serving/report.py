"""The serve drill's table, ``drill.json`` document and plot, from ``spotkit.rehearsal.serving.analysis`` figures."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from spotkit.output import table
from spotkit.rehearsal.serving import analysis

LABELS = {"spotkit": "spotkit (agent hand-off)", "no-agent": "no agent (health checks)",
          "after-preemption": "recover after preemption"}


def document(results: dict) -> dict:
    """What ``drill.json`` holds: per run its figures, timeline and raw timeline; and the comparison."""
    summaries = {mode: analysis.summarize(run) for mode, run in results.items()}
    doc = {"workload": "serve", "settings": next(iter(results.values())).settings if results else {},
           "runs": {mode: {**summaries[mode], "timeline": analysis.timeline(run), "raw": run.to_dict()}
                    for mode, run in results.items()},
           "compare": analysis.compare(summaries)}
    return doc


def _ms(value: Optional[float]) -> str:
    return "-" if value is None else f"{value * 1000:.0f}"


def render_table(doc: dict) -> str:
    rows = []
    for mode, s in doc["runs"].items():
        r, c = s["requests"], s["requests"]["failed_by_cause"]
        rows.append([LABELS.get(mode, mode), str(s["interruptions"]), str(r["sent"]), str(r["succeeded"]),
                     str(r["failed"]), f"{c['refused'] + c['reset']}/{c['5xx']}/{c['stream-cut']}",
                     "/".join(_ms(s["latency"]["all"][k]) for k in ("p50", "p90", "p99")),
                     _ms(s["latency"]["windows"]["p99"]), _ms(s["latency"]["uninterrupted"]["p99"]),
                     "/".join(_ms(s["ttft"]["all"][k]) for k in ("p50", "p99")),
                     f"{s['seconds_below_target']:.1f}",
                     f"{s['replica_seconds'].get('spot', 0):.0f}/{s['replica_seconds'].get('on-demand', 0):.0f}"])
    return table(rows, ["RUN", "INT", "SENT", "OK", "FAILED", "CONN/5XX/CUT", "LATENCY P50/90/99 ms",
                        "P99 WINDOWS", "P99 CALM", "TTFT P50/99", "S BELOW TARGET", "SPOT/OD REPLICA-S"])


def plot(results: dict, doc: dict, path: Path) -> Path:
    """One column per run: ready replicas, request rate and failures, latency P50/P99 over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes = list(results)
    fig, axes = plt.subplots(3, len(modes), figsize=(5.2 * len(modes), 8), sharex=True, squeeze=False)
    for col, mode in enumerate(modes):
        run, s = results[mode], doc["runs"][mode]
        tl = s["timeline"]
        t0 = run.load_started_at
        ax_ready, ax_rate, ax_lat = axes[0, col], axes[1, col], axes[2, col]
        if tl["ready"]:
            xs, ys = zip(*tl["ready"])
            ax_ready.step(xs, ys, where="post", color="C0")
        ax_ready.axhline(s["target_ready"], color="grey", linestyle=":", linewidth=1)
        ax_ready.set_ylim(0, s["target_ready"] + 2)
        ax_ready.set_title(f"{LABELS.get(mode, mode)}\n{s['requests']['failed']} failed of {s['requests']['sent']}, "
                           f"{s['seconds_below_target']:.1f} s below target", fontsize=9)
        ax_rate.bar(tl["t"], tl["rate"], width=0.9, color="C2", alpha=0.6, label="requests started /s")
        ax_rate.bar(tl["t"], tl["failed"], width=0.9, color="red", label="failed /s")
        p50 = [(t, v) for t, v in zip(tl["t"], tl["p50"]) if v is not None]
        p99 = [(t, v) for t, v in zip(tl["t"], tl["p99"]) if v is not None]
        if p50:
            ax_lat.plot(*zip(*p50), color="C1", label="P50")
        if p99:
            ax_lat.plot(*zip(*p99), color="C3", label="P99")
        for ax in (ax_ready, ax_rate, ax_lat):
            for n, item in enumerate(run.interruptions):
                if item.rebalance_at:
                    ax.axvline(item.rebalance_at - t0, color="purple", linestyle=":", linewidth=1,
                               label="rebalance" if ax is ax_ready and n == 0 else None)
                ax.axvline(item.notice_at - t0, color="orange", linestyle="--", linewidth=1,
                           label="notice" if ax is ax_ready and n == 0 else None)
                if item.reclaimed_at:
                    ax.axvline(item.reclaimed_at - t0, color="red", linewidth=1,
                               label="reclaim" if ax is ax_ready and n == 0 else None)
        if col == 0:
            ax_ready.set_ylabel("ready replicas")
            ax_rate.set_ylabel("requests / s")
            ax_lat.set_ylabel("latency (s, by start)")
            ax_ready.legend(loc="lower left", fontsize=7)
            ax_rate.legend(loc="lower left", fontsize=7)
            ax_lat.legend(loc="upper left", fontsize=7)
        ax_lat.set_xlabel("seconds since the load started")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
