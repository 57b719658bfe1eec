"""``spotkit interrupt``: interrupt some of a group's instances on purpose (AWS FIS, or a local fire drill).

A thin adapter over ``toolkit/interrupt.py``."""

from __future__ import annotations

import click

from spotkit.cli.context import CliContext, pass_ctx
from spotkit.cli.events_cmd import journal_options, stack_outputs
from spotkit.errors import ToolkitError
from spotkit.runtime.notice import TAG_GROUP
from spotkit.output import emit_json, table


@click.command("interrupt")
@click.option("--group", required=True, help=f"The spotkit group (its {TAG_GROUP} tag / Auto Scaling group name).")
@click.option("--count", type=click.IntRange(1, None), help="Interrupt this many running instances (default 1).")
@click.option("--percent", type=click.IntRange(1, 100), help="Interrupt this share of the running instances (rounded up).")
@click.option("--target", type=click.Choice(("aws", "local")), default="aws", show_default=True,
              help="aws: start the group's FIS experiment; local: put the warnings on the stack's queue in the "
                   "emulator and run the handler (a fire drill of the whole event path).")
@click.option("--stack", help="Read the queue URL and journal table from this stack's Terraform outputs.")
@click.option("--project-dir", type=click.Path(file_okay=False), envvar="SPOTKIT_PROJECT_DIR",
              help="With --stack: where spotkit keeps working directories (default ./.spotkit).")
@click.option("--queue-url", help="(local) The stack's interruption_queue_url (default: from --stack).")
@journal_options("The handler's DynamoDB journal (default: from --stack); aws: read to report what drained.",
                 "(local) A JSON-lines journal when no table is given.")
@click.option("--poll-seconds", default=10.0, show_default=True, type=click.FloatRange(0, 300),
              help="(aws) Seconds between polls of the experiment and the journal.")
@click.option("--dry-run", is_flag=True, help="Choose the instances and say what would be done; change nothing.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@pass_ctx
def interrupt_command(ctx: CliContext, group, count, percent, target, stack, project_dir, queue_url, journal_table,
                      journal_file, poll_seconds, dry_run, yes):
    """Interrupt COUNT (or PERCENT) of a group's instances and follow what happens to them.

    On AWS the group's FIS experiment (synthesized by the stack) sends real spot interruptions to the
    chosen instances; the command follows it to the end and reports what was interrupted, what the
    handler drained and what replaced it. With --target local the same warnings go on the stack's
    queue in the emulator and the handler runs: nothing is terminated.
    """
    from spotkit import interrupt as it
    from spotkit.cli.events_cmd import journal_args, open_journal

    if count is not None and percent is not None:
        raise ToolkitError("give --count or --percent, not both", hint=f"spotkit interrupt --group {group} --count 1")
    outputs = stack_outputs(ctx, stack, target, project_dir) if stack else {}
    journal_table = journal_table or outputs.get("interruption_journal_table")
    chosen = it.choose(_running_instances(ctx, group), count=count, percent=percent, group=group)
    where = "with AWS FIS (real spot interruptions)" if target == "aws" else "on the local queue (a fire drill)"
    if not dry_run and not yes:
        if ctx.json:
            raise click.UsageError("--output json needs --yes (or --dry-run) for a command that changes things")
        click.confirm(f"Interrupt {len(chosen)} instance(s) of {group} ({', '.join(chosen)}) {where}?",
                      abort=True, err=True)
    if target == "local":
        queue_url = queue_url or outputs.get("interruption_queue_url")
        if not queue_url:
            raise ToolkitError("--target local needs the stack's queue: give --stack or --queue-url",
                               hint=f"spotkit interrupt --group {group} --target local --stack STACK")
        store, _ = open_journal(ctx, journal_table, journal_file) if not dry_run else (None, "")
        result = _fire_drill(ctx, queue_url, store, group, chosen, dry_run)
    else:
        store = open_journal(ctx, journal_table, None)[0] if journal_table and not dry_run else None
        result = it.run_fis(ctx.client("fis"), ctx.client("ec2"), ctx.client("autoscaling"), group, chosen,
                            dry_run=dry_run, store=store, poll_seconds=poll_seconds)
    _echo_result(ctx, result, target, dry_run)
    if dry_run:
        return
    unhandled = [i for i in result.interrupted if result.handled.get(i) != "done"]
    if target == "local" and unhandled:
        raise ToolkitError(f"{len(unhandled)} of {len(result.interrupted)} warning(s) not handled: "
                           + ", ".join(f"{i} {result.handled.get(i, 'not journaled')}" for i in unhandled),
                           hint=f"see why with 'spotkit status --group {group} {journal_args(journal_table, store)}'")
    if target == "aws" and result.experiment_state != "completed":
        raise ToolkitError(f"FIS experiment {result.experiment_id} ended {result.experiment_state}: "
                           f"{result.experiment_reason}",
                           hint="a stop condition (the handler's dead-letter alarm) may have fired: "
                                f"spotkit status --group {group}")


def _running_instances(ctx: CliContext, group: str) -> list:
    """The group's running instances; a failed AWS call is a user error naming the group."""
    from spotkit import interrupt as it

    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return it.running_instances(ctx.client("ec2"), group)
    except (BotoCoreError, ClientError) as exc:
        from spotkit.aws import user_error
        from spotkit.cli.hints import rerun

        mapped = user_error(exc, ctx.endpoint_url, command=rerun())
        raise ToolkitError(f"cannot list the instances of group {group!r}: {exc}",
                           hint=mapped.hint if mapped else f"{rerun()} --debug   # shows the failed call") from None


def _fire_drill(ctx: CliContext, queue_url: str, store, group: str, chosen: list, dry_run: bool):
    """The warnings on the stack's queue in the emulator, then the handler (on the journal ``store``) consumes
    them; a dry run (no store) only says what it would send."""
    from spotkit import interrupt as it
    from spotkit.runtime.interruption.actions import Clients
    from spotkit.runtime.interruption.consumer import QueueConsumer
    from spotkit.runtime.interruption.handler import Handler, HandlerSettings

    sqs = ctx.client("sqs")
    handler = Handler(Clients(factory=ctx.client), store, HandlerSettings(groups=(group,))) if store else None
    consume = (lambda: QueueConsumer(sqs, queue_url, handler, concurrency=4, wait_seconds=1)  # noqa: E731
               .run(stop_when_idle=True))
    account = ctx.client("sts").get_caller_identity()["Account"] if not dry_run else "123456789012"
    return it.fire_drill(sqs, queue_url, consume, store, group, chosen,
                         region=sqs.meta.region_name, account=account, dry_run=dry_run)


def _echo_result(ctx: CliContext, result, target: str, dry_run: bool) -> None:
    """What would be done, or what was interrupted, how the handler handled it and (aws) what replaced it."""
    if ctx.json:
        emit_json(result)
        return
    for line in result.would:
        click.echo(line)
    if result.experiment_id:
        click.echo(f"experiment {result.experiment_id}: {result.experiment_state}"
                   + (f" ({result.experiment_reason})" if result.experiment_reason else ""))
    if not dry_run:
        click.echo(table([[i, result.handled.get(i, "not journaled"),
                           ", ".join(f"{k}={v}" for k, v in result.actions.get(i, {}).items()) or "-"]
                          for i in result.interrupted], ["INSTANCE", "HANDLED", "ACTIONS"]))
        if target == "aws":
            click.echo(f"replaced by: {', '.join(result.replaced_by) or 'nothing yet'}")

def register(group: click.Group) -> None:
    group.add_command(interrupt_command)
