"""The Lambda entry point: ``spotkit.runtime.interruption.lambda_entry.handler``.

The stack wires the interruption queue to this function with an event source mapping that reports
batch item failures: messages whose events must be retried are returned in ``batchItemFailures`` (they
come back after the queue's visibility timeout, then go to the dead-letter queue), the rest are
deleted. A direct EventBridge invocation (one event, no ``Records``) is handled too.

Configuration (environment, set by ``spotkit.constructs.interruption_events``):
``SPOTKIT_JOURNAL_TABLE`` (required), ``SPOTKIT_DRY_RUN`` (``true``/``false``), ``SPOTKIT_GROUPS``
(comma-separated), ``SPOTKIT_CHECKPOINT_COMMAND`` (empty: no checkpoint), ``SPOTKIT_CHECKPOINT_ON_REBALANCE``,
``SPOTKIT_DRAIN_ON_REBALANCE``, ``SPOTKIT_START_REPLACEMENT``, ``SPOTKIT_CLUSTERS``, ``SPOTKIT_LIFECYCLE_RESULT``;
the on-demand fallback: ``SPOTKIT_FALLBACK`` (``true``/``false``), ``SPOTKIT_FALLBACK_MAX_ON_DEMAND_BASE``,
``SPOTKIT_FALLBACK_HOLD_MINUTES``, ``SPOTKIT_FALLBACK_CHECK_EVERY_MINUTES``.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any, Mapping, Optional

from spotkit.runtime.interruption.actions import Clients
from spotkit.runtime.interruption.handler import Handler, HandlerSettings
from spotkit.runtime.interruption.store import DynamoDBStore

logging.getLogger("spotkit.interruption").setLevel(logging.INFO)
log = logging.getLogger("spotkit.interruption")

_HANDLER: Optional[Handler] = None
LAMBDA_MARGIN_SECONDS = 15
RETRY_VISIBILITY_SECONDS = 10  # a message to retry comes back this soon (see _retry_soon)


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    value = env.get(name)
    return default if value is None or value == "" else value.strip().lower() in ("1", "true", "yes", "on")


def _list(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in env.get(name, "").split(",") if v.strip())


def settings_from_env(env: Mapping[str, str]) -> HandlerSettings:
    defaults = HandlerSettings()
    return HandlerSettings(
        dry_run=_flag(env, "SPOTKIT_DRY_RUN", False),
        checkpoint_command=env.get("SPOTKIT_CHECKPOINT_COMMAND", defaults.checkpoint_command),
        checkpoint_on_rebalance=_flag(env, "SPOTKIT_CHECKPOINT_ON_REBALANCE", defaults.checkpoint_on_rebalance),
        drain_on_rebalance=_flag(env, "SPOTKIT_DRAIN_ON_REBALANCE", defaults.drain_on_rebalance),
        start_replacement_on_rebalance=_flag(env, "SPOTKIT_START_REPLACEMENT", defaults.start_replacement_on_rebalance),
        groups=_list(env, "SPOTKIT_GROUPS"),
        clusters=_list(env, "SPOTKIT_CLUSTERS"),
        lifecycle_result=env.get("SPOTKIT_LIFECYCLE_RESULT", defaults.lifecycle_result) or defaults.lifecycle_result,
        fallback=_flag(env, "SPOTKIT_FALLBACK", defaults.fallback),
        fallback_max_on_demand_base=_int(env, "SPOTKIT_FALLBACK_MAX_ON_DEMAND_BASE", defaults.fallback_max_on_demand_base),
        fallback_hold_minutes=_int(env, "SPOTKIT_FALLBACK_HOLD_MINUTES", defaults.fallback_hold_minutes),
        fallback_check_every_minutes=_int(env, "SPOTKIT_FALLBACK_CHECK_EVERY_MINUTES",
                                          defaults.fallback_check_every_minutes),
    )


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    value = (env.get(name) or "").strip()
    return int(value) if value.isdigit() else default


def build_handler(env: Mapping[str, str], client_factory=None) -> Handler:
    table = env.get("SPOTKIT_JOURNAL_TABLE")
    if not table:
        raise RuntimeError("SPOTKIT_JOURNAL_TABLE is not set: the stack sets it to the journal table's name")
    if client_factory is None:
        import boto3

        from spotkit.runtime.interruption.retries import botocore_config

        config = botocore_config("handler")  # adaptive: in a wave, ELB, ECS and SSM throttle
        client_factory = lambda service: boto3.client(service, config=config)  # noqa: E731
    clients = Clients(factory=client_factory)
    return Handler(clients, DynamoDBStore(clients.dynamodb, table), settings_from_env(env))


def _own_identity(handler: Handler, context: Any) -> None:
    """The function's own account and region, from its ARN (``arn:aws:lambda:<region>:<account>:function:...``):
    events claiming another are dropped (``scope.py``), with no STS call."""
    arn = getattr(context, "invoked_function_arn", "") or ""
    parts = arn.split(":")
    if handler._identity is None and len(parts) >= 5 and parts[2] == "lambda":
        handler._identity = (handler.settings.account or parts[4], handler.settings.region or parts[3])


def _body(record: Any) -> Any:
    return record.get("body", "") if isinstance(record, Mapping) else record


def handle(event: Mapping[str, Any], context: Any, handler: Handler) -> dict:
    budget = None
    if context is not None and hasattr(context, "get_remaining_time_in_millis"):
        budget = context.get_remaining_time_in_millis() / 1000 - LAMBDA_MARGIN_SECONDS
    _own_identity(handler, context)
    if "Records" not in event:  # a direct EventBridge invocation
        outcomes = handler.handle_body(dict(event), wait_budget_seconds=budget)
        for o in outcomes:
            log.info("%s %s %s: %s", o.status, o.kind, o.instance_id, o.reason)
        if not all(o.delete_message for o in outcomes):  # a transient error or a failed action: async retry
            raise RuntimeError("; ".join(f"{o.status}: {o.reason}" for o in outcomes if not o.delete_message))
        return {"outcomes": [o.status for o in outcomes]}
    # The whole batch at once (shared AWS calls, see Handler.handle_batch); the outcomes stay per
    # message, so only the messages to retry are reported (ReportBatchItemFailures) and redelivered.
    records = [r for r in event["Records"]]
    try:
        results = handler.handle_batch([_body(r) for r in records], wait_budget_seconds=budget)
    except Exception:  # noqa: BLE001 - never fail the whole batch: each message alone, then
        log.exception("handling a batch of %d message(s) failed; handling each alone", len(records))
        results = [_alone(handler, _body(r), budget) for r in records]
    failures = []
    for record, outcomes in zip(records, results):
        message_id = record.get("messageId") if isinstance(record, Mapping) else None
        for o in outcomes:
            log.info(json.dumps({"message": message_id, "status": o.status, "kind": o.kind,
                                 "instance": o.instance_id, "event": o.event_id, "reason": o.reason,
                                 "actions": {a.name: a.status for a in o.actions}}))
        if message_id and not all(o.delete_message for o in outcomes):
            failures.append({"itemIdentifier": message_id})
    _retry_soon(handler, [r for r in records if isinstance(r, Mapping)
                          and {"itemIdentifier": r.get("messageId")} in failures])
    return {"batchItemFailures": failures}


def _alone(handler: Handler, body: Any, budget: Optional[float]) -> list:
    from spotkit.runtime.interruption.handler import RETRY, Outcome

    try:
        return handler.handle_body(body, wait_budget_seconds=budget)
    except Exception as exc:  # noqa: BLE001 - this message alone is retried (then the dead-letter queue)
        log.exception("handling a message failed")
        return [Outcome(RETRY, f"{type(exc).__name__}: {exc}")]


def _queue_url(arn: str) -> str:
    """arn:aws:sqs:<region>:<account>:<name> -> its queue URL (the role needs no sqs:GetQueueUrl)."""
    _, partition, _, region, account, name = arn.split(":", 5)
    domain = "amazonaws.com.cn" if partition == "aws-cn" else "amazonaws.com"
    return f"https://sqs.{region}.{domain}/{account}/{name}"


def _retry_soon(handler: Handler, records: list) -> None:
    """Make the messages to retry visible again in RETRY_VISIBILITY_SECONDS, not after the queue's
    visibility timeout (6x the function timeout: far past a two-minute notice). Best effort: if this
    fails they come back when their visibility runs out."""
    for record in records:
        if not record.get("eventSourceARN") or not record.get("receiptHandle"):
            continue
        try:
            handler.clients.get("sqs").change_message_visibility(
                QueueUrl=_queue_url(record["eventSourceARN"]), ReceiptHandle=record["receiptHandle"],
                VisibilityTimeout=RETRY_VISIBILITY_SECONDS)
        except Exception as exc:  # noqa: BLE001 - never fail the batch for this
            log.warning("could not shorten the visibility of %s: %s", record.get("messageId"), exc)


def handler(event, context):  # the Lambda handler
    global _HANDLER
    if _HANDLER is None:
        _HANDLER = build_handler(os.environ)
    return handle(event, context, _HANDLER)
