"""``spotkit handle-events``: the interruption handler as a queue consumer, or on one event file."""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
from pathlib import Path

import click

from spotkit.cli.context import CliContext, pass_ctx
from spotkit.errors import ToolkitError
from spotkit.runtime.notice import TAG_GROUP
from spotkit.output import emit_json

# One default for the handler, status and recover drain (SPOTKIT_INTERRUPTION_JOURNAL overrides it).
DEFAULT_JOURNAL_FILE = os.environ.get("SPOTKIT_INTERRUPTION_JOURNAL", str(Path(".spotkit") / "interruptions.jsonl"))


def fail_fast_config():
    """Few attempts and short timeouts: a wrong endpoint or table is reported within seconds, not minutes."""
    from spotkit.runtime.interruption.retries import botocore_config

    return botocore_config("fail_fast")


def open_journal(ctx: CliContext, journal_table, journal_file, *, default_file: str = DEFAULT_JOURNAL_FILE,
                 clients=None):
    """The journal (DynamoDB table or local JSON-lines file) and its description, checked with one cheap
    read before anything uses it: a wrong table or endpoint stops here with a clear error."""
    from spotkit.runtime.interruption.store import DynamoDBStore, JournalError, LocalFileStore

    try:
        if journal_table:
            DynamoDBStore(ctx.aws.client("dynamodb", config=fail_fast_config()), journal_table).check()
            dynamodb = clients.dynamodb if clients is not None else ctx.client("dynamodb")
            return DynamoDBStore(dynamodb, journal_table), f"DynamoDB table {journal_table}"
        path = Path(journal_file or default_file)
        store = LocalFileStore(path)
        store.check()
        return store, f"journal file {path}"
    except JournalError as exc:
        hint = exc.hint
        if not journal_table and "not a spotkit journal" in str(exc):
            hint = _journal_rerun_hint(Path(journal_file or default_file), default_file)
        raise ToolkitError(str(exc), hint=hint) from None
    except OSError as exc:
        raise ToolkitError(f"cannot use the journal file {journal_file or default_file}: {exc}",
                           hint="pass --journal-file with a writable path") from None


def stack_outputs(ctx: CliContext, stack: str, target: str, project_dir) -> dict:
    """The Terraform outputs of ``stack`` applied to ``target``: where its handler's queue and journal are."""
    from spotkit.stacks import registry
    from spotkit.deploy import workflow
    from spotkit.rehearsal.local.emulator import project_dir as resolve_project_dir

    registry.get(stack)
    opts = workflow.DeployOptions(project=resolve_project_dir(project_dir), target=target,
                                  terraform_bin=os.environ.get("SPOTKIT_TERRAFORM_BIN"),
                                  endpoint_url=ctx.endpoint_url if target == "local" else None, config=ctx.config)
    return workflow.outputs(workflow.open_workdir(stack, opts))


def _journal_rerun_hint(bad: Path, default_file: str) -> str:
    """The same command with a journal of its own (the file that is not a journal is left alone)."""
    ctx = click.get_current_context(silent=True)
    words = (ctx.command_path.split()[1:] if ctx is not None else []) or ["handle-events"]
    rerun = ctx.meta.get("spotkit.rerun_args", []) if ctx is not None else []
    words = _global_args(ctx.find_object(CliContext) if ctx is not None else None) + words
    new = Path(default_file)
    if new.resolve() == bad.resolve():
        new = new.with_name(new.stem + "-new" + new.suffix)
    if not rerun and bad.resolve() != Path(default_file).resolve():  # a reader (status): the default journal
        return shlex.join(["spotkit", *words]) + f"   # reads {default_file}; {bad} is left as it is"
    return shlex.join(["spotkit", *words, *rerun, "--journal-file", str(new)]) + f"   # {bad} is left as it is"


def _global_args(cli_ctx: "CliContext | None", region: str | None = None) -> list[str]:
    """The global options of this run, to repeat in a ``next:`` command."""
    if cli_ctx is None:
        return []
    out = []
    for flag, value in (("--profile", cli_ctx.profile), ("--region", region or cli_ctx.region),
                        ("--endpoint-url", cli_ctx.endpoint_url)):
        if value:
            out += [flag, value]
    return out


def journal_args(journal_table, store) -> str:
    """The option that names the journal in a command a user can paste (``spotkit status ...``)."""
    return f"--journal-table {journal_table}" if journal_table else f"--journal-file {store.path}"


def report_skipped_lines(store) -> None:
    """Say which lines of a local journal were skipped (torn by a killed writer, or not journal rows)."""
    skipped = getattr(store, "skipped_lines", [])
    if skipped:
        where = ", ".join(f"line {n}: {why}" for n, why in skipped[:5]) + (" ..." if len(skipped) > 5 else "")
        click.echo(f"note: journal {store.path}: skipped {len(skipped)} unreadable line(s) ({where}); the rest "
                   "was read, new rows start on a line of their own", err=True)


def journal_options(table_help: str, file_help: str):
    """--journal-table and --journal-file: the handler's journal, a DynamoDB table or else a local JSON-lines
    file (``file_help`` ends with the default file)."""
    def decorate(fn):
        fn = click.option("--journal-file", type=click.Path(dir_okay=False),
                          help=f"{file_help} Default: {DEFAULT_JOURNAL_FILE}.")(fn)
        return click.option("--journal-table", envvar="SPOTKIT_JOURNAL_TABLE", help=table_help)(fn)
    return decorate


@click.command("handle-events")
@click.option("--queue-url", help="Consume this SQS queue (the stack's interruption_queue_url output).")
@click.option("--event-file", type=click.Path(exists=True, dir_okay=False),
              help="Handle the event(s) in this JSON file instead (an EventBridge event or a list of them).")
@journal_options("DynamoDB journal (the stack's interruption_journal_table output); shared with the Lambda.",
                 "Local JSON-lines journal when no table is given.")
@click.option("--concurrency", default=8, show_default=True, type=click.IntRange(1, 256),
              help="Workers; each handles one batch of messages at a time.")
@click.option("--batch-size", default=10, show_default=True, type=click.IntRange(1, 10),
              help="Messages a worker receives and handles together (shared AWS calls; SQS's maximum is 10).")
@click.option("--visibility-timeout", default=60, show_default=True, type=click.IntRange(10, 43200),
              help="Seconds a received message stays invisible; extended while it is handled.")
@click.option("--wait-seconds", default=10, show_default=True, type=click.IntRange(1, 20), help="Long-poll wait.")
@click.option("--until-empty", is_flag=True, help="Stop when the queue is empty and nothing is in flight.")
@click.option("--checkpoint-command", help="Shell command SSM runs on the instance (default: the spotkit checkpoint hook).")
@click.option("--no-checkpoint", is_flag=True, help="Do not ask instances to checkpoint.")
@click.option("--group", "groups", multiple=True, help=f"Act only for these {TAG_GROUP} values (repeatable).")
@click.option("--cluster", "clusters", multiple=True, help="ECS clusters to look in (repeatable; default all).")
@click.option("--drain-on-rebalance", is_flag=True, help="Drain on a rebalance recommendation too.")
@click.option("--start-replacement", is_flag=True, help="Start a replacement early on a rebalance recommendation.")
@click.option("--fallback", is_flag=True,
              help="Act on spot capacity failures: raise the on-demand base, return to spot on the scheduled check "
                   "(what the stack's fallback settings turn on for its Lambda).")
@click.option("--fallback-max-on-demand-base", default=2, show_default=True, type=click.IntRange(1, None),
              help="With --fallback: the ceiling of the raised on-demand base.")
@click.option("--fallback-hold-minutes", default=30, show_default=True, type=click.IntRange(5, 1440),
              help="With --fallback: the least time between two changes of the on-demand base.")
@click.option("--outage-budget-minutes", default=15.0, show_default=True, type=click.FloatRange(0, 1440),
              help="With --queue-url: how long each worker keeps retrying a failing receive (growing pauses, up to "
                   "30 s) before the run ends; a receive that works resets it.")
@click.option("--dry-run", is_flag=True, help="Read everything, change nothing: log what would have been done.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@pass_ctx
def handle_events_command(ctx: CliContext, queue_url, event_file, journal_table, journal_file, concurrency,
                          batch_size, visibility_timeout, wait_seconds, until_empty, checkpoint_command, no_checkpoint,
                          groups, clusters, drain_on_rebalance, start_replacement, fallback, fallback_max_on_demand_base,
                          fallback_hold_minutes, outage_budget_minutes, dry_run, yes):
    """Drain, checkpoint and complete lifecycle actions for interruption warnings, exactly once.

    With --queue-url it runs until SIGTERM/SIGINT (clean shutdown: messages in progress finish, no
    more are received). Every event and action is journaled; a duplicate is acknowledged, not acted on.
    """
    from spotkit.runtime.interruption.actions import Clients
    from spotkit.runtime.interruption.handler import Handler, HandlerSettings

    if bool(queue_url) == bool(event_file):
        raise ToolkitError("give exactly one of --queue-url and --event-file",
                           hint="spotkit handle-events --queue-url $(terraform output -raw interruption_queue_url)")
    rerun = (["--event-file", str(event_file)] if event_file else ["--queue-url", queue_url]) + (
        ["--dry-run"] if dry_run else ["--yes"])
    click.get_current_context().meta["spotkit.rerun_args"] = rerun
    bodies = read_event_file(Path(event_file)) if event_file else []
    defaults = HandlerSettings()
    settings = HandlerSettings(
        dry_run=dry_run,
        checkpoint_command="" if no_checkpoint else (checkpoint_command or defaults.checkpoint_command),
        drain_on_rebalance=drain_on_rebalance, start_replacement_on_rebalance=start_replacement,
        groups=tuple(groups), clusters=tuple(clusters), fallback=fallback,
        fallback_max_on_demand_base=fallback_max_on_demand_base, fallback_hold_minutes=fallback_hold_minutes)
    if not dry_run and not yes:
        what = f"messages from {queue_url}" if queue_url else f"the events in {event_file}"
        click.confirm(f"Act on {what} (deregister targets, drain ECS, checkpoint, complete lifecycle actions)?",
                      abort=True, err=True)
    _log_to_stderr(ctx.debug)
    from spotkit.runtime.interruption.consumer import client_config

    config = client_config(concurrency)
    clients = Clients(factory=lambda service: ctx.aws.client(service, config=config))
    store, where = open_journal(ctx, journal_table, journal_file, clients=clients)
    handler = Handler(clients, store, settings)

    if event_file:
        _handle_event_file(ctx, handler, bodies, Path(event_file), where, store)
        return

    from spotkit.runtime.interruption.consumer import ConsumerError, QueueConsumer

    # Few attempts per receive (the consumer itself retries a failing receive a bounded number of times),
    # with a connection pool sized to the workers.
    consumer = QueueConsumer(ctx.aws.client("sqs", config=fail_fast_config().merge(config)), queue_url, handler,
                             concurrency=concurrency, batch_size=batch_size, visibility_timeout=visibility_timeout,
                             wait_seconds=wait_seconds, outage_budget_seconds=outage_budget_minutes * 60)
    consumer.install_signal_handlers()
    if not ctx.json:
        click.echo(f"start: consuming {queue_url} with {concurrency} workers{' (dry run)' if dry_run else ''}; "
                   f"journal: {where}; batches of up to {batch_size} messages", err=True)
    try:
        stats = consumer.run(stop_when_idle=until_empty)
    except ConsumerError as exc:
        raise ToolkitError(str(exc), hint=exc.hint) from None
    _report_queue_run(ctx, stats, store, journal_table, until_empty)


def _log_to_stderr(debug: bool) -> None:
    """The handler's log lines on stderr; the AWS SDK's own only under --debug."""
    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if not debug:
        for noisy in ("botocore", "boto3", "urllib3"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


def _report_queue_run(ctx: CliContext, stats, store, journal_table, until_empty: bool) -> None:
    """What the consumer did; with --until-empty, the messages it could not handle are a user error."""
    if ctx.json:
        emit_json(stats.to_dict())
    else:
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(stats.outcomes.items())) or "none"
        click.echo(f"done: received {stats.received}, deleted {stats.deleted}, returned {stats.returned}; "
                   f"outcomes: {outcomes}")
    report_skipped_lines(store)
    problems = stats.problems()
    if problems and until_empty:
        raise ToolkitError(
            f"{len(problems)} message(s) not handled: " + "; ".join(
                f"message {p['message_id']}: " + ", ".join(f"{o['status']} ({o['reason']})" for o in p["outcomes"])
                for p in problems[:5]) + (" ..." if len(problems) > 5 else ""),
            hint=f"see why with 'spotkit status {journal_args(journal_table, store)}'; once the cause is fixed, "
                 "the retry acts (a message that keeps failing ends in the dead-letter queue; an unreadable one is "
                 "journaled and deleted)")


def _handle_event_file(ctx: CliContext, handler, bodies: list, path: Path, where: str, store) -> None:
    """Each event of the file on its own (a batch of one each): a row per outcome; a valid event that needs
    nothing is ``ignored`` (exit 0); an event the file gets wrong is a user error naming it."""
    rows, unreadable, unhandled = [], [], []
    for index, body in enumerate(bodies):
        name = _event_name(body, index, len(bodies))
        for o in handler.handle_body(body):
            rows.append({"event": name, "status": o.status, "kind": o.kind, "instance": o.instance_id,
                         "event_id": o.event_id, "reason": o.reason, "actions": {a.name: a.status for a in o.actions}})
            if o.malformed:
                unreadable.append((name, o))
            elif not o.delete_message:
                unhandled.append((name, o))
    if ctx.json:
        emit_json(rows)
    else:
        for r in rows:
            acts = ", ".join(f"{k}={v}" for k, v in r["actions"].items()) or "-"
            click.echo(f"{r['status']:<11} {r['kind'] or '-'} {r['instance'] or '-'}: {acts}"
                       + (f" ({r['reason']})" if r["reason"] else ""))
        click.echo(f"journal: {where}")
    report_skipped_lines(store)
    if unreadable:
        name, first = unreadable[0]
        more = f" (and {len(unreadable) - 1} more)" if len(unreadable) > 1 else ""
        raise ToolkitError(f"{path}: {name} could not be read as an interruption event: {first.reason}{more}",
                           hint=f"fix {path} ({name}: an event as AWS delivers it, with the types AWS sends), "
                                f"then: spotkit handle-events --event-file {shlex.quote(str(path))}")
    if unhandled:
        raise ToolkitError(
            f"{len(unhandled)} of {len(rows)} event(s) not handled: "
            + "; ".join(f"{name} ({o.instance_id or o.kind or '-'}) {o.status}: {o.reason}" for name, o in unhandled),
            hint=f"fix what the reason says, then run the same command again (the journal lets a failed "
                 f"event be handled again): spotkit handle-events --event-file {shlex.quote(str(path))}")


def _event_name(body, index: int, count: int) -> str:
    """How a user finds the event in the file: its position, and the id AWS gave it when it has one."""
    where = f"event {index + 1} of {count}" if count > 1 else "the event"
    origin = body.get("id") if isinstance(body, dict) else None
    return f"{where} (id {origin})" if isinstance(origin, str) and origin else where


def read_event_file(path: Path) -> list[dict]:
    """The events of ``--event-file``: one JSON object or a list of them; anything else is a user error."""
    hint = (f"fix {path}: one event as a JSON object (an EventBridge event as AWS delivers it), "
            "or a JSON list of them")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ToolkitError(f"--event-file {path} is not UTF-8 text (offset {exc.start})", hint=hint) from exc
    except json.JSONDecodeError as exc:
        doc = exc.doc
        ends_early = doc.count("{") > doc.count("}") or doc.count("[") > doc.count("]") or doc.count('"') % 2 == 1
        truncated = " (the file ends early: truncated?)" if ends_early else ""
        raise ToolkitError(f"--event-file {path} is not valid JSON{truncated}: {exc.msg} at line {exc.lineno} "
                           f"column {exc.colno}", hint=hint) from exc
    items = data if isinstance(data, list) else [data]
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            where = f"item {i}" if isinstance(data, list) else "the file"
            raise ToolkitError(f"--event-file {path}: {where} is a JSON {type(item).__name__}, not an event object",
                               hint=hint)
    if not items:
        raise ToolkitError(f"--event-file {path} holds an empty list: no event to handle", hint=hint)
    return items


def register(group: click.Group) -> None:
    group.add_command(handle_events_command)
