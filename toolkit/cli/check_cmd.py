"""``spotkit check``: spot-safety rules and checkov over Terraform (HCL or JSON), plan JSON and Karpenter NodePools."""

from __future__ import annotations

import json
from pathlib import Path

import click

from spotkit.check import run_check_on_paths
from spotkit.check.report import FAIL_ON, fail_if_needed, render_text
from spotkit.check.sarif import to_sarif
from spotkit.cli.context import CliContext, pass_ctx
from spotkit.errors import ToolkitError
from spotkit.output import emit_json


@click.command("check")
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--format", "fmt", type=click.Choice(["text", "json", "sarif"]), default=None,
              help="Output format (default: text, or json under --output json).")
@click.option("--out", "out_file", type=click.Path(dir_okay=False), help="Write the report to FILE instead of stdout.")
@click.option("--fail-on", type=click.Choice(FAIL_ON), default="error", show_default=True,
              help="Exit 1 when an unsuppressed finding has this severity or higher.")
@click.option("--checkov/--no-checkov", "checkov", default=None,
              help="Require checkov / skip it (default: run it when installed, say so when not).")
@click.option("--show-suppressed", is_flag=True, help="List suppressed findings with their reasons (text format).")
@pass_ctx
def check_command(ctx: CliContext, paths, fmt, out_file, fail_on, checkov, show_suppressed):
    """Check Terraform for spot risks (rules SPOT001...) and, with checkov, general security.

    PATHS: directories of .tf files (local modules are followed), cdk.tf.json files or directories
    of them, plans from 'terraform show -json', Karpenter NodePool YAML (default: cdktf.out).
    Findings are in two categories, spot and general; general ones are left to checkov when it runs.
    A rule that needs a value unknown before apply reports UNDECIDED (never a failure).
    Suppress a finding with a reason: tag spotkit:skip-check = "SPOT003: why", in HCL a comment
    # spotkit:skip-check SPOT003: why (in or just above the resource), or check.suppress in --config.
    """
    targets = list(paths) or ["cdktf.out"]
    if not paths and not Path("cdktf.out").exists():
        raise ToolkitError("no path given and ./cdktf.out does not exist",
                           hint="run 'spotkit synth' first, or pass a cdk.tf.json, a directory, or a plan JSON")
    mode = "auto" if checkov is None else ("on" if checkov else "off")
    report = run_check_on_paths(targets, config=ctx.config, checkov=mode)
    fmt = fmt or ("json" if ctx.json else "text")
    if fmt == "sarif":
        text = json.dumps(to_sarif(report), indent=2)
    elif fmt == "json":
        text = json.dumps({**report.to_dict(), "fail_on": fail_on,
                           "failing": len(report.failing(fail_on))}, indent=2, sort_keys=True)
    else:
        text = render_text(report, show_suppressed=show_suppressed)
    if out_file:
        Path(out_file).write_text(text + "\n", encoding="utf-8")
        click.echo(f"wrote {fmt} report to {out_file}", err=True)
    elif fmt == "json":
        emit_json(json.loads(text))
    else:
        click.echo(text)
    fail_if_needed(report, fail_on)


def register(group: click.Group) -> None:
    group.add_command(check_command)
