"""``spotkit drill --workload serve``: the serve drill's rendering (the domain is ``spotkit.rehearsal.serving``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import click

from spotkit.output import emit_json

SERVE_NEXT = "spotkit synth gpu_inference && spotkit check cdktf.out"


def rate_warning(loadgen: dict, rate: float) -> Optional[str]:
    """A one-line warning when the load generator could not keep the asked rate (never silent)."""
    achieved, lag = loadgen.get("achieved_rate"), loadgen.get("lag_p95")
    if achieved is None:
        return f"the load generator left no summary: its rate is unknown (asked {rate:g} req/s)"
    if achieved < 0.95 * rate or (lag or 0) > 0.25:
        lower = max(1, int(achieved * 0.8))
        return (f"the load generator kept {achieved:g} req/s of the {rate:g} asked (starts up to {lag:g} s late at "
                f"P95): latencies are measured under less load than asked; "
                f"next: spotkit drill --workload serve --rate {lower}")
    return None


def run_serve(ctx, settings, out_dir: Path, no_plot: Optional[str], plot_hint: str) -> None:
    from spotkit.rehearsal.serving.balancer import check_port, find_haproxy
    from spotkit.rehearsal.serving.drill import run_serve_drill
    from spotkit.rehearsal.serving.report import document, plot, render_table

    find_haproxy()  # before anything starts: one line saying how to install it
    check_port(settings.port)

    say = (lambda msg: None) if ctx.json else (lambda msg: click.echo(f"  {msg}", err=True))
    if not ctx.json:
        events = settings.events()
        click.echo(f"serve drill: {settings.replicas} replicas ({settings.on_demand_base} on-demand) behind haproxy, "
                   f"{settings.rate:g} req/s open loop, {settings.interruptions} reclaims in {len(events)} "
                   f"interruptions (seed {settings.seed}), notice {settings.notice_seconds:g}s; runs: spotkit, "
                   f"no agent, recover after preemption", err=True)
    results = run_serve_drill(settings, out_dir, on_event=say)
    doc = document(results)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "drill.json").write_text(json.dumps(doc, indent=1, default=str))
    png = None if no_plot else plot(results, doc, out_dir / "drill.png")
    warnings = [w for w in (rate_warning(s["loadgen"], settings.rate) for s in doc["runs"].values()) if w]
    for warning in dict.fromkeys(warnings):
        click.echo(f"warning: {warning}", err=True)
    if ctx.json:
        emit_json({"compare": doc["compare"], "runs": {m: {k: v for k, v in s.items() if k not in ("timeline", "raw")}
                                                        for m, s in doc["runs"].items()},
                   "plot": str(png) if png else None, "data": str(out_dir / "drill.json")})
        return
    click.echo(render_table(doc))
    cmp = doc["compare"]
    failed = cmp["failed"]
    line = ", ".join(f"{m} {n}" for m, n in failed.items())
    click.echo(f"failed requests: {line}")
    if cmp.get("spotkit_p99_windows_over_uninterrupted") is not None:
        click.echo(f"spotkit P99 inside interruption windows / uninterrupted: "
                   f"{cmp['spotkit_p99_windows_over_uninterrupted']:.2f}")
    sk = doc["runs"].get("spotkit")
    if sk:
        click.echo(f"spotkit: {sk['exited_before_reclaim']}/{sk['interruptions']} replicas out of the balancer and "
                   f"gone before their reclaim; {sk['replacements_on_demand']} replacement(s) from the on-demand "
                   f"fallback")
    click.echo(f"plot: {png}" if png else f"plot: not drawn ({no_plot}); {plot_hint}, then run the drill again")
    click.echo(f"data: {out_dir / 'drill.json'}")
    click.echo(f"next: {SERVE_NEXT}   # the stack whose hand-off this rehearses")
