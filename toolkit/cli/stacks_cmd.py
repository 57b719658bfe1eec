"""``spotkit stacks`` and ``spotkit synth``."""

from __future__ import annotations

import click

from stacks import registry
from toolkit import synth as synth_domain
from toolkit.cli.context import CliContext, pass_ctx
from toolkit.cli.hints import echo_next
from toolkit.output import emit_json, table


@click.command("stacks")
@pass_ctx
def stacks_command(ctx: CliContext):
    """List the stacks spotkit ships."""
    specs = list(registry.STACKS.values())
    if ctx.json:
        emit_json([{"name": s.name, "description": s.description} for s in specs])
        return
    click.echo(table([[s.name, s.description] for s in specs], ["STACK", "DESCRIPTION"]))


@click.command("synth")
@click.argument("stack_names", nargs=-1, metavar="[STACK]...")
@click.option("--out", "outdir", default="cdktf.out", show_default=True, type=click.Path(file_okay=False),
              help="Write DIR/stacks/<name>/cdk.tf.json.")
@click.option("--no-cache", is_flag=True,
              help="Synthesize even stacks whose inputs did not change (and refresh the synthesis cache).")
@pass_ctx
def synth_command(ctx: CliContext, stack_names, outdir, no_cache):
    """Synthesize stacks (default: all) to Terraform JSON and summarize each."""
    specs = registry.resolve(list(stack_names))  # unknown names fail before the slow import
    stats: dict = {}
    paths = synth_domain.synthesize([s.name for s in specs], outdir, ctx.config, use_cache=not no_cache, stats=stats)
    if stats.get("cached") and not ctx.json:
        click.echo(f"synth: unchanged, from the cache: {', '.join(stats['cached'])} (--no-cache to force)", err=True)
    summaries = [synth_domain.summarize(p, name=s.name) for s, p in zip(specs, paths)]
    if ctx.json:
        emit_json([{**_summary_dict(s)} for s in summaries])
        return
    for s in summaries:
        click.echo(synth_domain.render_summary(s))
    # each next: line is one command that works when pasted (a shell comment may follow)
    click.echo()
    echo_next(f"spotkit plan {specs[0].name} --target local   # on the local emulator (spotkit local start)")
    echo_next(f"cd {outdir}/stacks/{specs[0].name} && terraform init   # or plain Terraform")


def _summary_dict(s: synth_domain.StackSummary) -> dict:
    return {
        "stack": s.name, "path": s.path, "resources": s.resources, "resource_total": s.resource_total,
        "az_count": s.az_count,
        "groups": [{
            "name": g.name, "instance_types": g.instance_types, "attribute_based": g.attribute_based,
            "on_demand_base": g.on_demand_base, "on_demand_percent_above_base": g.on_demand_percent_above_base,
            "spot_percent_above_base": 100 - g.on_demand_percent_above_base,
            "spot_allocation_strategy": g.spot_allocation_strategy, "subnets": g.subnets,
            "min_size": g.min_size, "max_size": g.max_size,
        } for g in s.groups],
    }


def register(group: click.Group) -> None:
    group.add_command(stacks_command)
    group.add_command(synth_command)
