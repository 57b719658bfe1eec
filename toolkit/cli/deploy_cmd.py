"""``spotkit plan``, ``apply``, ``destroy`` and ``output``: real Terraform over a synthesized stack."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from spotkit.stacks import registry
from spotkit.check import check_before_plan
from spotkit.cli.context import CliContext, pass_ctx
from spotkit.cli.hints import echo_next
from spotkit.deploy import planning, workflow
from spotkit.errors import StackNotFoundError
from spotkit.rehearsal.local.emulator import project_dir
from spotkit.output import emit_json


def deploy_options(with_target: bool = True):
    """Options every Terraform-driving command takes."""
    def decorate(fn):
        opts = [
            click.option("--terraform-bin", envvar="SPOTKIT_TERRAFORM_BIN",
                         help="terraform or tofu binary (default: terraform, else tofu, on PATH)."),
            click.option("--provider-mirror", envvar="SPOTKIT_PROVIDER_MIRROR", metavar="DIR|auto|none",
                         help="Install providers from this filesystem mirror (air-gapped); 'auto' (the default) "
                              "uses the first of /opt/tf-plugins, ~/.terraform.d/plugins, /usr/share/terraform/plugins "
                              "that holds providers; 'none': download from the registry."),
            click.option("--parallelism", type=click.IntRange(1, 256), default=workflow.DEFAULT_PARALLELISM,
                         show_default=True, help="Terraform -parallelism."),
            click.option("--project-dir", type=click.Path(file_okay=False), envvar="SPOTKIT_PROJECT_DIR",
                         help="Where spotkit keeps working directories and the emulator (default ./.spotkit)."),
            click.option("--no-cache", is_flag=True, expose_value=False, callback=_remember_no_cache,
                         help="Synthesize even when the stack's inputs did not change (refreshes the cache)."),
        ]
        if with_target:
            opts.append(click.option("--target", type=click.Choice(workflow.TARGETS), default="aws", show_default=True,
                                     help="aws: your account; local: the embedded emulator (spotkit local start)."))
        for opt in reversed(opts):
            fn = opt(fn)
        return fn
    return decorate


def _remember_no_cache(click_ctx: click.Context, _param, value: bool) -> bool:
    click_ctx.meta["spotkit.no_cache"] = value
    return value


def _options(ctx: CliContext, target, terraform_bin, provider_mirror, parallelism, project) -> workflow.DeployOptions:
    no_cache = bool(click.get_current_context().meta.get("spotkit.no_cache"))
    return workflow.DeployOptions(
        project=project_dir(project), target=target, terraform_bin=terraform_bin, provider_mirror=provider_mirror,
        endpoint_url=ctx.endpoint_url if target == "local" else None, parallelism=parallelism, config=ctx.config,
        use_cache=not no_cache)


def _prepare(ctx: CliContext, stack: str, opts: workflow.DeployOptions, check: bool = True) -> workflow.Workdir:
    from spotkit import synth as synth_domain

    app = synth_domain.user_app(".")  # a folder with your own CDKTF app (cdktf.json): its stacks
    if app is not None:
        found = {p.parent.name: p for p in synth_domain.synthesize_app(app, ".", opts.project / "app-synth")}
        if stack not in found:
            raise StackNotFoundError(f"your app ({app}) has no stack {stack!r}",
                                              hint=f"spotkit plan {sorted(found)[0]} --target {opts.target}")
        wd = workflow.prepare(stack, opts, synthesized=found[stack])
        _say(ctx, f"synth: {stack} (your app: {app})")
    else:
        registry.get(stack)
        wd = workflow.prepare(stack, opts)
        _say(ctx, f"synth: {stack}" + (" (unchanged: from the synthesis cache)" if wd.synthesized_from_cache else ""))
    if check:  # the spot-safety rules run on what was synthesized (before any local-target pruning)
        report = check_before_plan([wd.synthesized or opts.project / "synth" / "stacks" / stack / "cdk.tf.json"],
                                   ctx.config)
        _say(ctx, report.summary_line())
    if wd.removed:
        _say(ctx, f"note: the local target leaves out what the emulator cannot create ({len(wd.removed)}):")
        for item in wd.removed:
            _say(ctx, f"  - {item.address}: {item.reason}")
    if wd.stale_state:
        _say(ctx, f"note: the emulator was restarted; its old state was set aside as {wd.stale_state}")
    if workflow.init_needed(wd):
        _say(ctx, f"init: {wd.path}" + (f" (providers from mirror {wd.mirror})" if wd.mirror else ""))
        workflow.init(wd, force=True)
    else:
        _say(ctx, f"init: up to date in {wd.path} (providers, backend and lock file unchanged)")
    return wd


def _say(ctx: CliContext, text: str) -> None:
    # Progress goes to stderr so --output json stays parseable.
    click.echo(text, err=ctx.json)


def _progress(ctx: CliContext):
    def on_line(line: str) -> None:
        if workflow.is_progress_line(line):
            click.echo(f"  {line.strip()}", err=True)
    return on_line


def _plan_dict(stack: str, result: workflow.PlanResult) -> dict:
    s = result.summary
    return {"stack": stack, "plan_file": str(result.plan_file),
            "plan_json": str(result.json_file) if result.json_file else None,
            "changes": s.has_changes, **s.counts,
            "replacements": [c.address for c in s.replacements], "destroys": [c.address for c in s.destroys],
            "data_loss": [{"address": c.address, "what": w} for c, w in s.data_loss]}


@click.command("plan")
@click.argument("stack")
@deploy_options()
@click.option("--out", "out", type=click.Path(dir_okay=False), help="Write the binary plan here (and its JSON to FILE.json).")
@click.option("--detailed-exitcode", is_flag=True, help="Exit 0 when nothing changes, 2 when something does, 1 on error.")
@pass_ctx
def plan_command(ctx: CliContext, stack, terraform_bin, provider_mirror, parallelism, project_dir, target, out,
                 detailed_exitcode):
    """Synthesize STACK, run terraform init and plan, and summarize the plan."""
    opts = _options(ctx, target, terraform_bin, provider_mirror, parallelism, project_dir)
    wd = _prepare(ctx, stack, opts)  # runs the spot rules once (exit 1 on errors)
    result = workflow.plan(wd, Path(out) if out else None, parallelism=parallelism)
    if ctx.json:
        emit_json(_plan_dict(stack, result))
    else:
        click.echo(planning.render_plan_summary(stack, result.summary))
        where = f" (JSON: {result.json_file})" if result.json_file else ""
        click.echo(f"plan: {result.plan_file}{where}, planned in {result.seconds:.1f} s")
        if result.summary.has_changes:
            echo_next(f"spotkit apply {stack} --target {target} --plan {result.plan_file}")
    if detailed_exitcode and result.summary.has_changes:
        sys.exit(2)


@click.command("apply")
@click.argument("stack")
@deploy_options()
@click.option("--plan", "plan_file", type=click.Path(dir_okay=False, exists=True),
              help="Apply this saved plan (from 'spotkit plan --out') instead of planning now.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--allow-data-loss", is_flag=True, help="Apply even if the plan destroys retained volumes, EFS or snapshots.")
@pass_ctx
def apply_command(ctx: CliContext, stack, terraform_bin, provider_mirror, parallelism, project_dir, target, plan_file,
                  yes, allow_data_loss):
    """Apply STACK: a saved plan, or plan now and confirm."""
    opts = _options(ctx, target, terraform_bin, provider_mirror, parallelism, project_dir)
    if plan_file:
        registry.get(stack)
        wd = workflow.open_workdir(stack, opts)
        result = workflow.read_plan(wd, Path(plan_file))
    else:
        wd = _prepare(ctx, stack, opts)
        result = workflow.plan(wd, parallelism=parallelism)
    _say(ctx, planning.render_plan_summary(stack, result.summary))
    planning.guard_data_loss(result.summary, allow_data_loss)
    if not result.summary.has_changes:
        _finish(ctx, wd, 0.0, applied=False)
        return
    if not yes:
        click.confirm(f"Apply these changes to {stack} ({target})?", abort=True)
    _say(ctx, f"apply: {stack} ({target})")
    seconds = workflow.apply(wd, result.plan_file, on_line=_progress(ctx), parallelism=parallelism)
    _finish(ctx, wd, seconds, applied=True)


def _finish(ctx: CliContext, wd: workflow.Workdir, seconds: float, applied: bool) -> None:
    resources = workflow.state_resources(wd)
    outs = workflow.outputs(wd)
    if ctx.json:
        emit_json({"stack": wd.stack, "target": wd.target, "applied": applied, "seconds": round(seconds, 1),
                   "resources": resources, "outputs": outs})
        return
    by_type: dict[str, int] = {}
    for address in resources:
        rtype = address.split(".")[0]
        by_type[rtype] = by_type.get(rtype, 0) + 1
    verb = f"done: applied in {seconds:.1f} s" if applied else "done: nothing to apply"
    click.echo(f"{verb}; {wd.stack} ({wd.target}) has {len(resources)} resources:")
    for rtype, n in sorted(by_type.items()):
        click.echo(f"  {n:3d}  {rtype}")
    for name, value in sorted(outs.items()):
        click.echo(f"  output {name} = {value}")
    echo_next(f"spotkit output {wd.stack} --target {wd.target}")


@click.command("destroy")
@click.argument("stack")
@deploy_options()
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--allow-data-loss", is_flag=True, help="Destroy even retained volumes, EFS and snapshots.")
@pass_ctx
def destroy_command(ctx: CliContext, stack, terraform_bin, provider_mirror, parallelism, project_dir, target, yes,
                    allow_data_loss):
    """Destroy everything STACK created (refuses to destroy retained data without --allow-data-loss)."""
    opts = _options(ctx, target, terraform_bin, provider_mirror, parallelism, project_dir)
    wd = _prepare(ctx, stack, opts, check=False)
    result = workflow.plan(wd, destroy=True, parallelism=parallelism)
    _say(ctx, planning.render_plan_summary(stack, result.summary))
    planning.guard_data_loss(result.summary, allow_data_loss)
    if not result.summary.has_changes:
        _say(ctx, "done: nothing to destroy")
        return
    if not yes:
        click.confirm(f"Destroy {result.summary.counts['destroy']} resources of {stack} ({target})?", abort=True)
    _say(ctx, f"destroy: {stack} ({target})")
    seconds = workflow.apply(wd, result.plan_file, on_line=_progress(ctx), parallelism=parallelism)
    _say(ctx, f"done: destroyed in {seconds:.1f} s")


@click.command("output")
@click.argument("stack")
@deploy_options()
@pass_ctx
def output_command(ctx: CliContext, stack, terraform_bin, provider_mirror, parallelism, project_dir, target):
    """Show STACK's Terraform outputs."""
    registry.get(stack)
    opts = _options(ctx, target, terraform_bin, provider_mirror, parallelism, project_dir)
    wd = workflow.open_workdir(stack, opts)
    outs = workflow.outputs(wd)
    if ctx.json:
        emit_json(outs)
        return
    if not outs:
        click.echo(f"{stack} ({target}) has no outputs yet", err=True)
    for name, value in sorted(outs.items()):
        click.echo(f"{name} = {value}")


def register(group: click.Group) -> None:
    for command in (plan_command, apply_command, destroy_command, output_command):
        group.add_command(command)
