"""``spotkit drill``: the interruption drill on embedded emulators."""

from __future__ import annotations

from pathlib import Path

import click

from spotkit.cli.context import CliContext, pass_ctx
from spotkit.cli.hints import echo_next
from spotkit.runtime.notice import STANDARD_NOTICE_SECONDS
from spotkit.output import emit_json, table


PLOT_INSTALL_HINT = "pip install 'spotkit[plot]'"
# Synthesizes the training stack into cdktf.out, then checks it: works when pasted in any folder.
CHECK_HINT = "spotkit synth training && spotkit check cdktf.out"


def plot_unavailable() -> str | None:
    """Why drill.png cannot be drawn here (the optional 'plot' extra is missing), or None."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return "matplotlib (the optional 'plot' extra) is not installed"
    return None


def _fmt(value, unit="s"):
    return "-" if value is None else f"{value:.2f}{unit}" if isinstance(value, float) else str(value)


def render_drill_table(results) -> str:
    rows = []
    for mode, run in results.items():
        s = run.summary()
        name = f"{mode} ({s['notice_policy']})" if s.get("notice_policy") else mode
        rows.append([name, str(len(run.interruptions)), f"{s['wall_seconds']:.1f}s", _fmt(s["overhead_seconds"]),
                     _fmt(s["overhead_per_interruption"]), _fmt(s["idle_seconds_per_interruption"]),
                     str(s["steps_lost_total"]), str(s["steps_lost_max"]), f"{s['goodput']:.0%}",
                     _fmt(s["detection_seconds_mean"]), _fmt(s["checkpoint_seconds_mean"])])
    return table(rows, ["RUN", "INTERRUPTIONS", "WALL", "OVERHEAD", "OVERHEAD/INT", "IDLE/INT", "STEPS LOST",
                        "MAX LOST/INT", "GOODPUT", "DETECT (mean)", "CHECKPOINT (mean)"])


def run_drill_with_aws(ctx: CliContext, settings, out: Path, use_aws: bool, say):
    """The drill, with the retained-volume step on the emulator (``--endpoint-url`` or the local target)."""
    from spotkit.rehearsal.drill import run_drill

    aws_step, started_here, project = None, False, None
    if use_aws:
        from spotkit.aws import AwsTarget
        from spotkit.rehearsal.drill_aws import DrillAwsTarget
        from spotkit.rehearsal.local import emulator

        endpoint = ctx.endpoint_url
        if not endpoint:
            project = emulator.project_dir(None)
            state, started_here = emulator.start(project, port=None)  # a free port
            endpoint = state.url
            say(f"local AWS emulator at {endpoint}")
        import os

        os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
        ec2 = AwsTarget(region=ctx.region or "us-east-1", endpoint_url=endpoint).client("ec2")
        target = DrillAwsTarget(ec2, journal_dir=out / "journal")
        target.setup()
        say(f"instance {target.instance_id} with retained data volume {target.volume_id} on {target.device}")
        aws_step = target.reclaim
    try:
        return run_drill(settings, out, aws_step=aws_step, on_event=say)
    finally:
        if started_here and project is not None:
            from spotkit.rehearsal.local import emulator

            emulator.stop(project)


TRAIN_ONLY = ("steps", "step_seconds", "checkpoint_every", "replacement_seconds", "notice_policy", "handoff", "use_aws")
SERVE_ONLY = ("replicas", "rate", "port", "drain_seconds", "ready_timeout")


def _option_name(name: str) -> str:
    return {"use_aws": "--aws/--no-aws", "handoff": "--handoff/--no-handoff"}.get(name, "--" + name.replace("_", "-"))


def _given(names) -> list[str]:
    from click.core import ParameterSource

    ctx = click.get_current_context()
    return [n for n in names if ctx.get_parameter_source(n) == ParameterSource.COMMANDLINE]


@click.command("drill")
@click.option("--workload", type=click.Choice(["train", "serve"]), default="train", show_default=True,
              help="What is interrupted: a training job (checkpoints, steps lost) or inference replicas behind a "
                   "load balancer (failed requests, latency; needs haproxy).")
@click.option("--interruptions", "-n", type=int,
              help="Reclaims to inject. Default 3 (train), 6 (serve: a wave of 2 and a no-capacity reclaim included).")
@click.option("--seed", default=7, show_default=True, help="Seed of the interruption schedule.")
@click.option("--steps", default=60, show_default=True, help="Training steps to finish.")
@click.option("--step-seconds", default=0.5, show_default=True, help="Compute time of one step.")
@click.option("--checkpoint-every", default=10, show_default=True, help="Periodic checkpoint interval (steps).")
@click.option("--cloud", type=click.Choice(["aws", "gcp", "azure"]), default="aws", show_default=True,
              help="Whose metadata service the instances have (its emulator, its notice, the agent --cloud).")
@click.option("--notice-seconds", type=float,
              help=f"Notice before the reclaim, scaled down for the drill: default 4 on AWS "
                   f"({STANDARD_NOTICE_SECONDS['aws']} s), 2 on GCP and Azure ({STANDARD_NOTICE_SECONDS['gcp']} s); "
                   "5 with --workload serve.")
@click.option("--replacement-seconds", default=1.0, show_default=True,
              help="Boot time of a replacement instance (launch to workload start).")
@click.option("--notice-policy", type=click.Choice(["checkpoint-and-continue", "stop"]),
              default="checkpoint-and-continue", show_default=True,
              help="The agent's notice policy (stop: today's checkpoint-and-stop at the notice).")
@click.option("--rebalance-lead", type=float,
              help="Seconds a rebalance recommendation comes before the notice (seeded, absent for some "
                   "interruptions). Default: none (train), 1.5 (serve).")
@click.option("--handoff/--no-handoff", default=True, show_default=True,
              help="Agent run: launch the replacement at the rebalance/notice and resume from the final checkpoint "
                   "(--no-handoff: it boots after the reclaim).")
@click.option("--out", "out", type=click.Path(file_okay=False),
              help="Working directory: checkpoints or request records, logs, drill.png, drill.json. Default "
                   ".spotkit/drill (train), .spotkit/drill-serve (serve).")
@click.option("--aws/--no-aws", "use_aws", default=None,
              help="Re-attach the retained data volume with the runbook on the local AWS emulator at every reclaim "
                   "(default: on with --cloud aws).")
@click.option("--replicas", default=4, show_default=True, help="Serve: replicas behind the balancer (1 on-demand).")
@click.option("--rate", default=8.0, show_default=True, help="Serve: requests per second (Poisson, open loop).")
@click.option("--port", default=0, show_default=True, help="Serve: the balancer's port (0: any free port).")
@click.option("--drain-seconds", default=2.0, show_default=True,
              help="Serve: the deregistration delay (scaled): how long in-flight requests may take once out.")
@click.option("--ready-timeout", default=30.0, show_default=True,
              help="Serve: seconds the first replicas get to become healthy in the balancer.")
@pass_ctx
def drill_command(ctx: CliContext, workload, cloud, interruptions, seed, steps, step_seconds, checkpoint_every,
                  notice_seconds, replacement_seconds, notice_policy, rebalance_lead, handoff, out, use_aws,
                  replicas, rate, port, drain_seconds, ready_timeout):
    """Rehearse spot interruptions of a real training job or inference service, with and without the agent."""
    from spotkit import extras
    from spotkit.errors import ToolkitError

    if workload == "serve":
        return _drill_serve(ctx, cloud, out, interruptions=interruptions, notice_seconds=notice_seconds,
                            rebalance_lead=rebalance_lead, replicas=replicas, seed=seed, rate=rate, port=port,
                            drain_seconds=drain_seconds, ready_timeout=ready_timeout)
    wrong = _given(SERVE_ONLY)
    if wrong:
        raise ToolkitError(f"{_option_name(wrong[0])} is an option of the serve drill: add --workload serve",
                           hint="spotkit drill --workload serve")
    from spotkit.rehearsal.drill import DrillSettings, compare, plot

    interruptions = 3 if interruptions is None else interruptions
    out = out or ".spotkit/drill"
    if notice_seconds is None:
        notice_seconds = 4.0 if cloud == "aws" else 2.0
    if use_aws is None:
        use_aws = cloud == "aws"
    elif use_aws and cloud != "aws":
        raise ToolkitError(f"--aws re-attaches an EBS volume with the AWS runbook: it does not apply to "
                           f"--cloud {cloud}",
                           hint=f"spotkit drill --cloud {cloud} --no-aws")
    extras.require("demo", *(["local"] if use_aws else []))  # before any work, not when the workload starts
    from spotkit.rehearsal.drill import DrillSettings, plot, report

    settings = DrillSettings(interruptions=interruptions, seed=seed, steps=steps, step_seconds=step_seconds,
                             checkpoint_every=checkpoint_every, notice_seconds=notice_seconds,
                             replacement_seconds=replacement_seconds, notice_policy=notice_policy,
                             rebalance_lead=rebalance_lead, handoff=handoff, cloud=cloud)
    settings.validate()
    out_dir = Path(out)
    say = (lambda msg: None) if ctx.json else (lambda msg: click.echo(f"  {msg}", err=True))
    no_plot = _plot_note()
    if not ctx.json:
        label = "" if cloud == "aws" else f" ({cloud})"
        click.echo(f"drill{label}: {interruptions} interruptions (seed {seed}), {steps} steps of {step_seconds}s, "
                   f"notice {notice_seconds}s, agent policy {notice_policy}", err=True)
    results = run_drill_with_aws(ctx, settings, out_dir, use_aws, say)
    summary = report(results)
    import json

    (out_dir / "drill.json").write_text(json.dumps(summary, indent=2))
    png = None if no_plot else plot(results, out_dir / "drill.png")
    if ctx.json:
        emit_json({**summary, "plot": str(png) if png else None})
        return
    _echo_report(results, summary, png, no_plot, out_dir)


def _plot_note() -> str | None:
    """Why drill.png cannot be drawn (``plot_unavailable``), said on stderr before the drill runs, not after."""
    no_plot = plot_unavailable()
    if no_plot:
        click.echo(f"note: {no_plot}; the drill writes drill.json and the table, no drill.png "
                   f"({PLOT_INSTALL_HINT} for the plot)", err=True)
    return no_plot


def _echo_report(results, summary: dict, png, no_plot, out_dir: Path) -> None:
    """The training drill's table, its comparison with the baseline, the re-attached volumes and its files."""
    click.echo(render_drill_table(results))
    cmp = summary["compare"]
    if cmp["overhead_ratio"] is not None:
        click.echo(f"overhead per interruption: agent {cmp['overhead_per_interruption']['agent']:.2f}s, baseline "
                   f"{cmp['overhead_per_interruption']['baseline']:.2f}s (ratio {cmp['overhead_ratio']:.2f}); goodput "
                   f"{cmp['goodput']['agent']:.0%} vs {cmp['goodput']['baseline']:.0%}")
    reattached = [i.aws for i in results["agent"].interruptions if i.aws]
    if reattached:
        ok = sum(1 for a in reattached if a["reattached"])
        click.echo(f"data volume re-attached to the replacement by `recover volumes`: {ok}/{len(reattached)} reclaims")
    click.echo(f"plot: {png}" if png else f"plot: not drawn ({no_plot}); {PLOT_INSTALL_HINT}, then run the drill again")
    click.echo(f"data: {out_dir / 'drill.json'}")
    echo_next(f"{CHECK_HINT}   # is your Terraform ready for this?")


def _drill_serve(ctx: CliContext, cloud: str, out, **fields):
    """The serve drill (``--workload serve``); ``fields`` are its settings, those left out (None) at their
    defaults. A training option given with it is a user error."""
    from spotkit import extras
    from spotkit.errors import ToolkitError

    wrong = _given(TRAIN_ONLY)
    if wrong:
        raise ToolkitError(f"{_option_name(wrong[0])} is an option of the training drill, not of --workload serve",
                           hint="spotkit drill --workload serve")
    if cloud != "aws":
        raise ToolkitError(f"the serve drill runs on AWS's metadata service only (got --cloud {cloud})",
                           hint="spotkit drill --workload serve")
    extras.require("demo")  # the replicas' model (numpy), before anything starts
    from spotkit.cli.drill_serve import run_serve
    from spotkit.rehearsal.serving.drill import ServeDrillSettings

    settings = ServeDrillSettings(**{k: v for k, v in fields.items() if v is not None})
    settings.validate()
    no_plot = _plot_note()
    return run_serve(ctx, settings, Path(out or ".spotkit/drill-serve"), no_plot, PLOT_INSTALL_HINT)


def register(group: click.Group) -> None:
    group.add_command(drill_command)
