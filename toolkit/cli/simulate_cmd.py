"""``spotkit simulate``: cost and availability of a stack's spot policy on real capacity traces."""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from spotkit.cli.context import CliContext, pass_ctx
from spotkit.output import emit_json


@click.command("simulate")
@click.argument("stack")
@click.option("--trace", "trace_dirs", multiple=True, type=click.Path(),
              help="A trace directory (<zone>_<label>.json files, docs/simulate.md); repeat for several.")
@click.option("--tf-json", type=click.Path(dir_okay=False),
              help="Read the policy from this cdk.tf.json instead of synthesizing the stack.")
@click.option("--out", "outdir", default="cdktf.out", show_default=True, type=click.Path(file_okay=False),
              help="Where the stack is synthesized (without --tf-json).")
@click.option("--zones", help="Trace zones standing for the stack's AZs, comma-separated (default: the first N).")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False),
              help="Write a PNG of ready replicas and on-demand share (needs the 'plot' extra).")
@pass_ctx
def simulate_command(ctx: CliContext, stack, trace_dirs, tf_json, outdir, zones, plot_path):
    """Replay spot capacity traces against STACK's policy and compare it with all on-demand, spot in
    one zone and SpotHedge: cost relative to all on-demand, availability, preemptions, fallbacks.

    Settings of the simulation go in the --config file's 'simulate:' section (boot_seconds,
    spot_price_ratio, zones, replicas, spothedge_overprovision); the stack's own keys change the policy.
    """
    from spotkit import extras

    extras.require("simulate")  # numpy: before any synthesis, not at the first trace
    from spotkit.simulate import simulate_stack
    from spotkit.simulate.report import plot, render

    zone_list = [z.strip() for z in zones.split(",") if z.strip()] if zones else None
    report = simulate_stack(stack, list(trace_dirs), ctx.config, tf_json=tf_json, outdir=outdir,
                            zones=zone_list, keep_series=bool(plot_path))
    note = None
    if plot_path:
        note = plot(report, plot_path)
    report.pop("_series", None)
    if ctx.json:
        emit_json({**report, "plot": None if note or not plot_path else str(Path(plot_path)), "plot_note": note})
        return
    click.echo(render(report))
    if plot_path:
        click.echo(f"\n{note}" if note else f"\nplot: {plot_path}")
    again = ["spotkit", "simulate", stack, *[a for d in trace_dirs for a in ("--trace", d)]]
    if not plot_path:
        click.echo(f"\nnext: {shlex.join(again + ['--plot', 'simulate.png'])}   # ready replicas and on-demand share over time")
    click.echo(f"next: {shlex.join(again + ['-o', 'json'])}   # every figure, and the levers, as JSON")


def register(group: click.Group) -> None:
    group.add_command(simulate_command)
