"""``spotkit handle-events``: the interruption handler as a queue consumer, or on one event file."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import click

from toolkit.cli.context import CliContext, pass_ctx
from toolkit.errors import ToolkitError
from toolkit.output import emit_json

DEFAULT_JOURNAL_FILE = ".spotkit/interruption-journal.jsonl"


def _store(ctx: CliContext, journal_table, journal_file):
    from toolkit.interruption.store import DynamoDBStore, LocalFileStore

    if journal_table:
        return DynamoDBStore(ctx.client("dynamodb"), journal_table), f"DynamoDB table {journal_table}"
    path = Path(journal_file or DEFAULT_JOURNAL_FILE)
    return LocalFileStore(path), f"journal file {path}"


@click.command("handle-events")
@click.option("--queue-url", help="Consume this SQS queue (the stack's interruption_queue_url output).")
@click.option("--event-file", type=click.Path(exists=True, dir_okay=False),
              help="Handle the event(s) in this JSON file instead (an EventBridge event or a list of them).")
@click.option("--journal-table", envvar="SPOTKIT_JOURNAL_TABLE",
              help="DynamoDB journal (the stack's interruption_journal_table output); shared with the Lambda.")
@click.option("--journal-file", type=click.Path(dir_okay=False),
              help=f"Local JSON-lines journal when no table is given. Default: {DEFAULT_JOURNAL_FILE}.")
@click.option("--concurrency", default=8, show_default=True, type=click.IntRange(1, 256), help="Messages handled at once.")
@click.option("--visibility-timeout", default=60, show_default=True, type=click.IntRange(10, 43200),
              help="Seconds a received message stays invisible; extended while it is handled.")
@click.option("--wait-seconds", default=10, show_default=True, type=click.IntRange(1, 20), help="Long-poll wait.")
@click.option("--until-empty", is_flag=True, help="Stop when the queue is empty and nothing is in flight.")
@click.option("--checkpoint-command", help="Shell command SSM runs on the instance (default: the spotkit checkpoint hook).")
@click.option("--no-checkpoint", is_flag=True, help="Do not ask instances to checkpoint.")
@click.option("--group", "groups", multiple=True, help="Act only for these spotkit:group values (repeatable).")
@click.option("--cluster", "clusters", multiple=True, help="ECS clusters to look in (repeatable; default all).")
@click.option("--drain-on-rebalance", is_flag=True, help="Drain on a rebalance recommendation too.")
@click.option("--start-replacement", is_flag=True, help="Start a replacement early on a rebalance recommendation.")
@click.option("--dry-run", is_flag=True, help="Read everything, change nothing: log what would have been done.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@pass_ctx
def handle_events_command(ctx: CliContext, queue_url, event_file, journal_table, journal_file, concurrency,
                          visibility_timeout, wait_seconds, until_empty, checkpoint_command, no_checkpoint, groups,
                          clusters, drain_on_rebalance, start_replacement, dry_run, yes):
    """Drain, checkpoint and complete lifecycle actions for interruption warnings, exactly once.

    With --queue-url it runs until SIGTERM/SIGINT (clean shutdown: messages in progress finish, no
    more are received). Every event and action is journaled; a duplicate is acknowledged, not acted on.
    """
    from toolkit.interruption.actions import Clients
    from toolkit.interruption.handler import Handler, HandlerSettings

    if bool(queue_url) == bool(event_file):
        raise ToolkitError("give exactly one of --queue-url and --event-file",
                           hint="spotkit handle-events --queue-url $(terraform output -raw interruption_queue_url)")
    bodies = read_event_file(Path(event_file)) if event_file else []
    defaults = HandlerSettings()
    settings = HandlerSettings(
        dry_run=dry_run,
        checkpoint_command="" if no_checkpoint else (checkpoint_command or defaults.checkpoint_command),
        drain_on_rebalance=drain_on_rebalance, start_replacement_on_rebalance=start_replacement,
        groups=tuple(groups), clusters=tuple(clusters))
    if not dry_run and not yes:
        what = f"messages from {queue_url}" if queue_url else f"the events in {event_file}"
        click.confirm(f"Act on {what} (deregister targets, drain ECS, checkpoint, complete lifecycle actions)?",
                      abort=True, err=True)
    logging.basicConfig(level=logging.DEBUG if ctx.debug else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s")
    if not ctx.debug:
        for noisy in ("botocore", "boto3", "urllib3"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    store, where = _store(ctx, journal_table, journal_file)
    handler = Handler(Clients(factory=ctx.client), store, settings)

    if event_file:
        outcomes = [o for body in bodies for o in handler.handle_body(body)]
        rows = [{"status": o.status, "kind": o.kind, "instance": o.instance_id, "event_id": o.event_id,
                 "reason": o.reason, "actions": {a.name: a.status for a in o.actions}} for o in outcomes]
        if ctx.json:
            emit_json(rows)
        else:
            for r in rows:
                acts = ", ".join(f"{k}={v}" for k, v in r["actions"].items()) or "-"
                click.echo(f"{r['status']:<11} {r['kind'] or '-'} {r['instance'] or '-'}: {acts}"
                           + (f" ({r['reason']})" if r["reason"] else ""))
            click.echo(f"journal: {where}")
        dropped = [o for o in outcomes if o.status == "dropped"]
        if dropped:
            raise ToolkitError(f"{len(dropped)} of {len(bodies)} event(s) in {event_file} could not be read as an "
                               f"interruption event: {dropped[0].reason}",
                               hint=f"fix {event_file}: each event needs the fields AWS sends (for EventBridge: "
                                    "detail-type, source, detail with instance-id)")
        return

    from toolkit.interruption.consumer import QueueConsumer

    consumer = QueueConsumer(ctx.client("sqs"), queue_url, handler, concurrency=concurrency,
                             visibility_timeout=visibility_timeout, wait_seconds=wait_seconds)
    consumer.install_signal_handlers()
    if not ctx.json:
        click.echo(f"start: consuming {queue_url} with {concurrency} workers{' (dry run)' if dry_run else ''}; "
                   f"journal: {where}", err=True)
    stats = consumer.run(stop_when_idle=until_empty)
    if ctx.json:
        emit_json(stats.to_dict())
    else:
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(stats.outcomes.items())) or "none"
        click.echo(f"done: received {stats.received}, deleted {stats.deleted}, returned {stats.returned}; "
                   f"outcomes: {outcomes}")


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
