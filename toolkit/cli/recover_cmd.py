"""``spotkit recover ...`` (the runbooks) and ``spotkit status``: thin adapters over toolkit.runbooks."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import click

from spotkit.cli.context import CliContext, pass_ctx
from spotkit.cli.hints import echo_next, rerun
from spotkit.cli.events_cmd import DEFAULT_JOURNAL_FILE as INTERRUPTION_JOURNAL
from spotkit.runtime.notice import TAG_DEVICE, TAG_GROUP, TAG_LOCK
from spotkit.output import emit_json, table
from spotkit.runbooks.base import DEFAULT_JOURNAL_DIR, RunContext


def _common(fn):
    fn = click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")(fn)
    fn = click.option("--dry-run", is_flag=True, help="Say what would be done (\"would attach ...\"); change nothing.")(fn)
    fn = click.option("--journal-dir", type=click.Path(file_okay=False), default=str(DEFAULT_JOURNAL_DIR),
                      show_default=True, help="Where the runbook journals its steps (a re-run resumes from it).")(fn)
    return fn


class _Bar:
    """A progress bar on stderr for long work (text output only)."""

    def __init__(self, enabled: bool, label: str):
        self.enabled, self.label, self.bar, self.last = enabled, label, None, 0

    def __call__(self, done: int, total: int, item: str) -> None:
        if not self.enabled or total < 2:
            return
        if self.bar is None:
            self.bar = click.progressbar(length=total, label=self.label, file=click.get_text_stream("stderr"))
            self.bar.__enter__()
        self.bar.update(done - self.last, item)
        self.last = done

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)


def _run_confirmed(ctx: CliContext, make, dry_run: bool, yes: bool, journal_dir: str, label: str, **run_options):
    """Plan with a dry run, show it, confirm (unless --yes), then run for real with a progress bar.

    ``make(run_context)`` returns ``(result, actions)``; ``run_options`` go to every ``RunContext``.
    """
    with _journal_errors(journal_dir):
        preview, actions = make(RunContext(dry_run=True, journal_dir=journal_dir, **run_options))
    if dry_run or not actions:
        return preview, False
    check_journal_dir(journal_dir)  # before the prompt and any change, not at the first step
    if not yes:
        if ctx.json:
            raise click.UsageError("--output json needs --yes (or --dry-run) for a command that changes things")
        for a in actions:
            click.echo(f"  {a.description}")
        click.confirm(f"{label}: go ahead?", abort=True)
    bar = _Bar(not ctx.json, label)
    try:
        with _journal_errors(journal_dir):
            result, _ = make(RunContext(dry_run=False, journal_dir=journal_dir, progress=bar, **run_options))
    finally:
        bar.close()
    return result, True


def _run_on_group(ctx: CliContext, group: str, runbook, dry_run: bool, yes: bool, journal_dir: str, label: str,
                  **run_options):
    """A runbook on one group that exists (``require_group``), planned, confirmed and run by ``_run_confirmed``.

    ``runbook(run_context)`` runs it and returns its result, whose ``actions`` are what it does.
    """
    require_group(ctx, group)

    def make(rc):
        r = runbook(rc)
        return r, r.actions

    return _run_confirmed(ctx, make, dry_run, yes, journal_dir, label, **run_options)


def check_journal_dir(journal_dir: str) -> None:
    """A journal folder that cannot be written (or created) is a user error before any change is made."""
    import errno

    folder = Path(journal_dir).resolve()
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise _journal_error(journal_dir, errno.ENOTDIR, f"{existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise _journal_error(journal_dir, errno.EACCES, f"{existing} is not writable")


@contextmanager
def _journal_errors(journal_dir: str):
    """A full disk, or a folder that cannot be written, under --journal-dir is a user error naming it."""
    import errno

    try:
        yield
    except OSError as exc:
        inside = exc.filename is None or Path(str(exc.filename)).resolve().is_relative_to(Path(journal_dir).resolve())
        if inside and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS):
            raise _journal_error(journal_dir, exc.errno, exc.strerror or str(exc)) from None
        raise


def _journal_error(journal_dir: str, code: int, reason: str):
    import errno

    from spotkit.errors import ToolkitError

    folder = Path(journal_dir).resolve()
    if code in (errno.ENOSPC, errno.EDQUOT):
        return ToolkitError(f"the runbook journal cannot be written in {folder}: {reason} (the disk is full)",
                            hint=f"df -h {folder}   # free space there, then run the same command: it resumes "
                                 "from the journal")
    elsewhere = Path.home() / ".spotkit" / "journal"
    return ToolkitError(f"the runbook journal cannot be written in {folder}: {reason}",
                        hint=rerun(journal_dir=str(elsewhere)) + "   # a journal folder you can write to")


def require_group(ctx: CliContext, group: str) -> None:
    """A group that nothing carries (no Auto Scaling group of that name, no instance, volume or snapshot
    tagged with it) is a user error naming the groups that do exist, never "nothing to do"."""
    from spotkit.errors import ToolkitError
    from spotkit.runbooks import aws_calls as aws

    if aws.describe_groups(ctx.client("autoscaling"), [group]):
        return
    tagged = ctx.client("ec2").describe_tags(
        Filters=[{"Name": "key", "Values": [aws.GROUP_TAG]}, {"Name": "value", "Values": [group]}], MaxResults=5)
    if tagged.get("Tags"):
        return
    known = sorted({g["AutoScalingGroupName"] for g in aws.describe_groups(ctx.client("autoscaling"))})
    if known:
        raise ToolkitError(f"no spotkit group named {group!r} here (groups: {', '.join(known)})",
                           hint="spotkit status   # lists the groups with their capacity; pass one of them with --group")
    raise ToolkitError(f"no spotkit group named {group!r} here, and no spotkit group at all in this account/region",
                       hint="spotkit stacks   # then apply the stack that makes the group (spotkit apply STACK); "
                            "or check --region / --endpoint-url")


def _echo_actions(actions) -> None:
    for a in actions:
        click.echo(("done: " if a.done else "") + a.description)


@click.group("recover")
def recover_group():
    """Recovery runbooks: put the pieces back after a spot interruption (each is journaled and resumable)."""


@recover_group.command("volumes")
@click.option("--group", "group", required=True, help="The spotkit group (Auto Scaling group name).")
@click.option("--allow-copy/--no-copy", default=True, show_default=True,
              help="Copy a volume (snapshot + new volume) to another AZ when the replacements are only there.")
@click.option("--lock-wait", type=click.FloatRange(0), default=60, show_default=True, metavar="SECONDS",
              help=f"Wait this long for another run on the same group (its lease tag {TAG_LOCK}) to finish.")
@_common
@pass_ctx
def volumes_command(ctx: CliContext, group, allow_copy, lock_wait, yes, dry_run, journal_dir):
    """Attach the group's retained data volumes to running instances that lack their device.

    One run per group at a time: a run holds a lease tag (spotkit:lock) on the group and a file lock on
    its journal; a second run waits up to --lock-wait seconds, then stops and names the holder."""
    from spotkit.runbooks.volumes import RecoverVolumes

    ec2, autoscaling = ctx.client("ec2"), ctx.client("autoscaling")
    result, ran = _run_on_group(
        ctx, group, lambda rc: RecoverVolumes(ec2, rc, allow_copy=allow_copy, autoscaling=autoscaling).run(group),
        dry_run, yes, journal_dir, f"recover volumes {group}", lock_wait=lock_wait)
    for skipped in result.journal_skipped:
        click.echo(f"note: journal {skipped}; skipped it (what that step made carries idempotency tags, so it is "
                   "found again and nothing is made twice)", err=True)
    if ctx.json:
        emit_json(result)
    else:
        _echo_actions(result.actions)
        rows = [[p.volume_id, p.device, p.volume_az, p.mode, p.instance_id or "-", p.copy_volume_id or "-", p.status]
                for p in result.placements]
        if rows:
            click.echo(table(rows, ["VOLUME", "DEVICE", "AZ", "MODE", "INSTANCE", "COPY", "STATUS"]))
        else:
            click.echo(f"no retained volume of group {group!r} is waiting for an instance")
        for origin, copy in sorted(result.superseded.items()):
            click.echo(f"{origin}: superseded by its copy {copy} (left untouched)")
        for loser, winner in sorted(result.superseded_copies.items()):
            click.echo(f"{loser}: a second copy made by a concurrent run, tagged superseded by {winner} (kept, "
                       "never offered as a waiting volume)")
        if not ran and not dry_run and not result.unresolved:
            click.echo("nothing to do")
    result.raise_for_unresolved()


@recover_group.command("snapshot")
@click.option("--group", required=True, help="The spotkit group.")
@click.option("--device", required=True, help=f"The device name, e.g. /dev/sdf (tag {TAG_DEVICE}).")
@click.option("--instance-id", help="Attach to this instance (default: a running instance of the group without the device).")
@_common
@pass_ctx
def snapshot_command(ctx: CliContext, group, device, instance_id, yes, dry_run, journal_dir):
    """Restore the newest snapshot of a device to a new volume next to an instance and attach it."""
    from spotkit.runbooks.snapshot import RestoreSnapshot

    ec2 = ctx.client("ec2")
    result, _ = _run_on_group(ctx, group, lambda rc: RestoreSnapshot(ec2, rc).run(group, device, instance_id),
                              dry_run, yes, journal_dir, f"restore {device} of {group}")
    if ctx.json:
        emit_json(result)
        return
    _echo_actions(result.actions)
    click.echo(f"{result.snapshot_id} ({result.snapshot_time}) -> {result.volume_id or 'new volume'} on "
               f"{result.instance_id} as {device}: {result.status}")


@recover_group.command("drain")
@click.option("--instance-id", required=True, help="The instance to take out of service.")
@click.option("--token", help="Lifecycle action token (default: the one the interruption journal holds).")
@click.option("--interruption-journal", default=INTERRUPTION_JOURNAL, show_default=True,
              help="The interruption handler's local journal (JSON lines), for the lifecycle token.")
@click.option("--no-complete", is_flag=True, help="Do not complete the termination lifecycle action.")
@_common
@pass_ctx
def drain_command(ctx: CliContext, instance_id, token, interruption_journal, no_complete, yes, dry_run, journal_dir):
    """Deregister from target groups, set ECS DRAINING and complete the lifecycle action, by hand."""
    from spotkit.runtime.interruption.actions import Clients
    from spotkit.runbooks.drain import DrainInstance, lifecycle_token_from_journal

    clients = Clients.of(factory=ctx.client)
    token = token or lifecycle_token_from_journal(interruption_journal, instance_id)

    def make(rc):
        r = DrainInstance(clients, rc).run(instance_id, token=token, complete_lifecycle=not no_complete)
        return r, [a for a in r.actions if not a.done and a.description.startswith("would")]

    result, _ = _run_confirmed(ctx, make, dry_run, yes, journal_dir, f"drain {instance_id}")
    if ctx.json:
        emit_json(result)
    else:
        click.echo(table([[s["name"], s["status"], s["message"]] for s in result.steps], ["STEP", "STATUS", "MESSAGE"]))
    if result.failed and not dry_run:
        from spotkit.errors import ToolkitError

        raise ToolkitError(f"{len(result.failed)} drain step(s) failed for {instance_id}: {result.failed[0]['message']}",
                           hint=f"fix the cause above and run 'spotkit recover drain --instance-id {instance_id}' again "
                                "(every step looks before it acts)")


@recover_group.command("replace")
@click.option("--group", required=True, help="The spotkit group.")
@click.option("--window", "window_minutes", default=30, show_default=True, help="Minutes of scaling activities to read.")
@click.option("--min-failures", default=2, show_default=True, help="Capacity failures that trigger the on-demand fallback.")
@_common
@pass_ctx
def replace_command(ctx: CliContext, group, window_minutes, min_failures, yes, dry_run, journal_dir):
    """Make sure the group has its desired capacity; fall back to on-demand while spot keeps failing."""
    from spotkit.runbooks.replace import ReplaceCapacity

    asg, ec2 = ctx.client("autoscaling"), ctx.client("ec2")
    result, _ = _run_on_group(
        ctx, group,
        lambda rc: ReplaceCapacity(asg, ec2, rc, window_minutes=window_minutes, min_failures=min_failures).run(group),
        dry_run, yes, journal_dir, f"replace {group}")
    _echo_capacity(ctx, result)
    if result.status == "launching":
        echo_next(f"spotkit recover replace --group {group}   # in a few minutes: the group is still launching")
    elif result.status == "fallback" and not dry_run:
        echo_next(f"spotkit recover restore-spot --group {group}   # when spot is back")


@recover_group.command("restore-spot")
@click.option("--group", required=True, help="The spotkit group.")
@click.option("--force", is_flag=True, help="Revert even if spot capacity failed recently.")
@click.option("--window", "window_minutes", default=30, show_default=True, help="Minutes of scaling activities to read.")
@_common
@pass_ctx
def restore_spot_command(ctx: CliContext, group, force, window_minutes, yes, dry_run, journal_dir):
    """Revert the on-demand fallback recorded by 'recover replace'."""
    from spotkit.runbooks.replace import RestoreSpot

    asg = ctx.client("autoscaling")
    result, _ = _run_on_group(
        ctx, group, lambda rc: RestoreSpot(asg, rc, window_minutes=window_minutes).run(group, force=force),
        dry_run, yes, journal_dir, f"restore spot {group}")
    _echo_capacity(ctx, result)


def _echo_capacity(ctx: CliContext, result) -> None:
    if ctx.json:
        emit_json(result)
        return
    _echo_actions(result.actions)
    click.echo(f"{result.group}: desired {result.desired}, in service {result.in_service}, "
               f"capacity failures {len(result.capacity_failures)}, on-demand base "
               f"{result.on_demand_base_before} -> {result.on_demand_base_after}: {result.status}")


@click.command("status")
@click.option("--group", help=f"Only this group (default: every group tagged {TAG_GROUP}).")
@click.option("--stack", help="Read the deployed handler's journal: the table this stack's Terraform outputs name "
                              "(interruption_journal_table).")
@click.option("--target", type=click.Choice(("local", "aws")), default="aws", show_default=True,
              help="With --stack: the target it was applied to.")
@click.option("--project-dir", type=click.Path(file_okay=False), envvar="SPOTKIT_PROJECT_DIR",
              help="With --stack: where spotkit keeps working directories (default ./.spotkit).")
@click.option("--journal-table", envvar="SPOTKIT_JOURNAL_TABLE",
              help="The handler's DynamoDB journal (the stack's interruption_journal_table output).")
@click.option("--journal-file", "--interruption-journal", "journal_file",
              help=f"A local JSON-lines journal (what 'handle-events' without a table writes). "
                   f"Default: {INTERRUPTION_JOURNAL} when it exists.")
@pass_ctx
def status_command(ctx: CliContext, group, stack, target, project_dir, journal_table, journal_file):
    """Spot vs on-demand per group, recent interruptions, waiting volumes, snapshot ages, fallbacks.

    Interruptions come from the handler's journal: the deployed one (--stack, or --journal-table), and a
    local one (--journal-file, or the default file when it exists); each is shown under its group.
    """
    from spotkit.runbooks.status import status

    tables, files = _journal_tables(ctx, journal_table, stack, target, project_dir), _journal_files(journal_file)
    interruptions = _read_interruptions(ctx, tables, files)
    if not tables and not files and not ctx.json:
        click.echo("note: no interruption journal read; for the deployed handler's pass --stack STACK "
                   "or --journal-table NAME", err=True)
    if group:
        require_group(ctx, group)
    result = status(ctx.client("ec2"), ctx.client("autoscaling"), group, interruptions=interruptions.values())
    if ctx.json:
        emit_json(result)
        return
    if not result.groups:
        click.echo("no spotkit group found" + (f" named {group!r}" if group else ""))
        return
    _echo_status(result.groups)


def _journal_tables(ctx: CliContext, journal_table, stack, target, project_dir) -> list[str]:
    """The DynamoDB journals to read: --journal-table, and the one --stack's Terraform outputs name."""
    from spotkit.cli.events_cmd import stack_outputs
    from spotkit.runbooks.status import journal_table_from_outputs

    tables = [journal_table] if journal_table else []
    if stack:
        found = journal_table_from_outputs(stack_outputs(ctx, stack, target, project_dir), stack)
        tables += [found] if found not in tables else []
    return tables


def _journal_files(journal_file) -> list[str]:
    """The local journal to read: --journal-file (it must exist), else the default file when it exists."""
    from spotkit.errors import ToolkitError

    if journal_file and not Path(journal_file).is_file():
        raise ToolkitError(f"journal file {journal_file} does not exist",
                           hint=f"give the file 'spotkit handle-events --journal-file' wrote, or leave "
                                f"--journal-file out to read {INTERRUPTION_JOURNAL}")
    return [journal_file] if journal_file else ([INTERRUPTION_JOURNAL] if Path(INTERRUPTION_JOURNAL).is_file() else [])


def _read_interruptions(ctx: CliContext, tables: list[str], files: list[str]) -> dict[str, dict]:
    """The journaled interruptions by event id; a table's row wins over a local file's of the same event."""
    from spotkit.cli.events_cmd import open_journal, report_skipped_lines
    from spotkit.runbooks.status import interruptions_from_store

    interruptions: dict[str, dict] = {}
    for name in tables:
        store, _ = open_journal(ctx, name, None)
        interruptions.update((e["event_id"], e) for e in interruptions_from_store(store))
    for path in files:
        store, _ = open_journal(ctx, None, path)
        for e in interruptions_from_store(store):
            interruptions.setdefault(e["event_id"], e)
        report_skipped_lines(store)
    return interruptions


def _echo_status(groups) -> None:
    """The status table, then each group's snapshots, waiting volumes, interruptions and fallback."""
    click.echo(table([[g.group, "-" if g.desired is None else g.desired, g.spot, g.on_demand, len(g.interruptions),
                       len(g.waiting_volumes),
                       (f"base {g.fallback['original_on_demand_base']}->{g.fallback['on_demand_base']}" if g.fallback else "-")]
                      for g in groups],
                     ["GROUP", "DESIRED", "SPOT", "ON-DEMAND", "INTERRUPTIONS", "WAITING VOLUMES", "FALLBACK"]))
    for g in groups:
        for s in g.snapshots:
            click.echo(f"{g.group} {s.device}: newest snapshot {s.snapshot_id}, {s.age_minutes} min old")
        for v in g.waiting_volumes:
            click.echo(f"{g.group} {v['device']}: {v['volume_id']} ({v['az']}) waits for an instance "
                       f"-> spotkit recover volumes --group {g.group}")
        for e in g.interruptions:
            click.echo(f"{g.group}: {e.get('time')} {e.get('kind')} {e.get('instance_id')} ({e.get('status')}"
                       + (f": {e['reason']}" if e.get("status") == "failed" and e.get("reason") else "") + ")")
        for e in g.capacity_events:
            click.echo(f"{g.group}: {e.get('time')} {e.get('kind')} ({e.get('status')}"
                       + (f": {e['reason']}" if e.get("status") == "failed" and e.get("reason") else "") + ")")
        if g.fallback:
            fbk = g.fallback
            check = (f"; next return check {fbk['next_check']} (automatic: back to spot in steps)"
                     if fbk.get("next_check") else "")
            click.echo(f"{g.group}: on-demand fallback since {fbk['since']} (on-demand base "
                       f"{fbk['original_on_demand_base']} -> {fbk['on_demand_base']}){check} "
                       f"-> spotkit recover restore-spot --group {g.group} to return now")

def register(group: click.Group) -> None:
    group.add_command(recover_group)
    group.add_command(status_command)
