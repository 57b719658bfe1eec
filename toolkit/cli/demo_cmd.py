"""``spotkit demo``: the main job on a fresh machine, in a few minutes and with no AWS account.

1. start the local AWS emulator (``spotkit local start``);
2. deploy the training stack to it with real Terraform (``spotkit apply training --target local --yes``);
3. run one interruption drill against a real workload, with the retained data volume re-attached by
   the recovery runbook (``spotkit drill``);
4. check every shipped stack for spot-safety (``spotkit synth`` + ``spotkit check``);
5. print a closing summary and the next commands.

Each step is the command of the same name, invoked with the same options a user would type.
"""

from __future__ import annotations

import time
from pathlib import Path

import click

from spotkit.cli.context import CliContext
from spotkit.cli.hints import echo_next, not_on_path_note


def _banner(text: str) -> None:
    click.secho(f"\n== {text}", bold=True)


@click.command("demo")
@click.option("--interruptions", "-n", default=3, show_default=True, help="Reclaims in the drill.")
@click.option("--seed", default=7, show_default=True)
@click.option("--out", "out", default=".spotkit/demo", show_default=True, type=click.Path(file_okay=False))
@click.option("--skip-apply", is_flag=True, help="Leave out the Terraform deployment (no terraform here).")
@click.option("--serve/--no-serve", default=True, show_default=True,
              help="Also run the serve drill (inference replicas behind haproxy; skipped, saying so, without it).")
@click.pass_context
def demo_command(click_ctx: click.Context, interruptions, seed, out, skip_apply, serve):
    """Deploy the training stack locally, drill interruptions, check the stacks, summarize."""
    from spotkit import extras

    extras.require("local", "demo")  # before the emulator and the deployment, not when the drill starts
    from spotkit.cli.check_cmd import check_command
    from spotkit.cli.deploy_cmd import apply_command
    from spotkit.cli.drill_cmd import drill_command
    from spotkit.cli.stacks_cmd import synth_command
    from spotkit.deploy import workflow
    from spotkit.rehearsal.local import emulator

    ctx: CliContext = click_ctx.obj
    out_dir = Path(out)
    started = time.monotonic()
    timings: dict[str, float] = {}

    note = not_on_path_note()
    if note:  # said first: the steps below print next: lines too
        click.echo(note)
    _banner("1/4 local AWS emulator")
    project = emulator.project_dir(None)
    state, fresh = emulator.start(project, port=None)  # 4566, else a free port
    click.echo(f"{'started' if fresh else 'reusing'} the emulator at {state.url} (spotkit local stop ends it)")
    ctx.endpoint_url = state.url

    if not skip_apply:
        _banner("2/4 deploy the training stack to the emulator (real terraform)")
        t = time.monotonic()
        # The provider mirror on the machine is found as for any command (toolkit/deploy/mirror.py: auto).
        click_ctx.invoke(apply_command, stack="training", target="local", yes=True, plan_file=None,
                         allow_data_loss=False, terraform_bin=None, provider_mirror=None,
                         parallelism=workflow.DEFAULT_PARALLELISM, project_dir=None)
        timings["deploy"] = time.monotonic() - t

    _banner("3/4 interruption drill: real workload, with and without the agent")
    t = time.monotonic()
    click_ctx.invoke(drill_command, interruptions=interruptions, seed=seed,
                     steps=max(60, interruptions * 18 + 1), step_seconds=0.5,  # outlasts its interruptions
                     checkpoint_every=10, notice_seconds=4.0, out=str(out_dir / "drill"), use_aws=True)
    timings["drill"] = time.monotonic() - t
    if serve:
        _serve_drill(click_ctx, drill_command, seed, out_dir, timings)

    _banner("4/4 spot-readiness check of every shipped stack")
    t = time.monotonic()
    synth_dir = out_dir / "cdktf.out"
    click_ctx.invoke(synth_command, stack_names=(), outdir=str(synth_dir))
    click_ctx.invoke(check_command, paths=(str(synth_dir),), fmt=None, out_file=None, fail_on="error",
                     checkov=None, show_suppressed=False)
    timings["check"] = time.monotonic() - t

    _summary(out_dir, skip_apply, timings, started)
    if note:
        click.echo(note)
    for hint in demo_next_hints(state.url):
        echo_next(hint)


def _summary(out_dir: Path, skip_apply: bool, timings: dict, started: float) -> None:
    """What each step gave (the drill's numbers from its drill.json) and how long it took."""
    import json

    _banner("summary")
    drill = json.loads((out_dir / "drill" / "drill.json").read_text())
    agent, base = drill["agent"], drill["baseline"]
    click.echo("deployed: training stack on the local emulator" if not skip_apply else "deploy: skipped")
    click.echo(f"drill: with the agent {agent['steps_lost_total']} steps lost over {len(agent['interruptions'])} "
               f"interruptions (max {agent['steps_lost_max']} per interruption); periodic checkpoints alone lost "
               f"{base['steps_lost_total']}; overhead per interruption {agent['overhead_per_interruption']}s vs "
               f"{base['overhead_per_interruption']}s, goodput {agent['goodput']:.0%} vs {base['goodput']:.0%}")
    png = out_dir / "drill" / "drill.png"
    click.echo(f"plot: {png}" if png.is_file() else f"plot: not drawn; pip install 'spotkit[plot]' for {png}")
    click.echo("check: every shipped stack passes with no errors")
    click.echo("took: " + ", ".join(f"{k} {v:.0f}s" for k, v in timings.items())
               + f", total {time.monotonic() - started:.0f}s")


DEMO_SERVE_INTERRUPTIONS = 3


def _serve_drill(click_ctx: click.Context, drill_command, seed: int, out_dir: Path, timings: dict) -> None:
    """The serve drill (``spotkit drill --workload serve``), when haproxy is installed."""
    from spotkit.errors import MissingDependencyError
    from spotkit.rehearsal.serving.balancer import INSTALL_HINT, find_haproxy

    try:
        find_haproxy()
    except MissingDependencyError:
        click.echo(f"serve drill: skipped (haproxy is not installed: {INSTALL_HINT})")
        return
    _banner("serve drill: inference replicas behind haproxy, with and without the agent")
    t = time.monotonic()
    # 3 interruptions: the shortest schedule with a wave and a reclaim with no spot capacity, so the demo stays
    # within its few minutes; bench/serve_drill.py measures the drill's default 6 reclaims
    click_ctx.invoke(drill_command, workload="serve", seed=seed, interruptions=DEMO_SERVE_INTERRUPTIONS,
                     out=str(out_dir / "drill-serve"))
    timings["serve drill"] = time.monotonic() - t


def demo_next_hints(url: str) -> list[str]:
    """The commands the demo ends with; each works when pasted (tests/test_cli_hints.py runs them)."""
    return [f"spotkit --endpoint-url {url} status", "spotkit local stop"]


def register(group: click.Group) -> None:
    group.add_command(demo_command)
