"""``spotkit stacks`` and ``spotkit synth``."""

from __future__ import annotations

import click

from spotkit.stacks import registry
from spotkit import synth as synth_domain
from spotkit.cli.context import CliContext, pass_ctx
from spotkit.cli.hints import echo_next
from spotkit.errors import ToolkitError
from spotkit.output import emit_json, table


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
    """Synthesize stacks (default: all) to Terraform JSON and summarize each.

    In a folder with a cdktf.json that runs your own app (its "app" command), synthesize that app, as
    `cdktf synth` does; otherwise spotkit's own stacks.
    """
    app = synth_domain.user_app(".")
    if app is not None:
        paths = _pick(synth_domain.synthesize_app(app, ".", outdir), stack_names)
        names = [p.parent.name for p in paths]
    else:
        specs = registry.resolve(list(stack_names))  # unknown names fail before the slow import
        names = [s.name for s in specs]
        stats: dict = {}
        paths = synth_domain.synthesize(names, outdir, ctx.config, use_cache=not no_cache, stats=stats)
        if stats.get("cached") and not ctx.json:
            click.echo(f"synth: unchanged, from the cache: {', '.join(stats['cached'])} (--no-cache to force)",
                       err=True)
    summaries = [synth_domain.summarize(p, name=n) for n, p in zip(names, paths)]
    if ctx.json:
        emit_json([{**_summary_dict(s)} for s in summaries])
        return
    for s in summaries:
        click.echo(synth_domain.render_summary(s))
    # each next: line is one command that works when pasted (a shell comment may follow)
    click.echo()
    echo_next(f"spotkit check {outdir}   # spot-readiness rules on what was synthesized")
    echo_next(f"spotkit local start && spotkit plan {names[0]} --target local   # on the local AWS emulator")
    echo_next(f"cd {outdir}/stacks/{names[0]} && {terraform_init_command(outdir)}   # or plain Terraform")


def _pick(paths, wanted) -> list:
    """The synthesized stacks named in ``wanted`` (all when empty); an unknown name is an error."""
    from spotkit.errors import StackNotFoundError

    by_name = {p.parent.name: p for p in paths}
    for name in wanted:
        if name not in by_name:
            raise StackNotFoundError(f"your app has no stack {name!r}", hint=f"spotkit synth {' '.join(by_name)}")
    return [by_name[n] for n in wanted] if wanted else list(paths)


def terraform_init_command(outdir: str) -> str:
    """``terraform init``, pointed at the machine's provider mirror when one is found (as spotkit's own runs
    are): a user's shell has no TF_CLI_CONFIG_FILE, and a machine without registry access needs it."""
    from pathlib import Path

    from spotkit.deploy import mirror

    try:
        found = mirror.resolve()
    except ToolkitError:
        found = None
    if found is None:
        return "terraform init"
    rc = Path(outdir).resolve() / "terraformrc"
    rc.write_text(mirror.render_cli_config(found))
    return f"TF_CLI_CONFIG_FILE={rc} terraform init"


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
