"""``InterruptionEventsSettings`` and its validation, run in the constructor before any resource exists."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional, Sequence

from spotkit.errors import ValidationError
from spotkit.runtime.notice import DEFAULT_CHECKPOINT_COMMAND

HANDLER_MODES = ("lambda", "queue")
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,38}[a-z0-9]$")
_DURATION = re.compile(r"^PT(\d+)M$")
_SELECTION = re.compile(r"^(ALL|COUNT\(\d+\)|PERCENT\((100|[1-9]\d?)\))$")


@dataclass(frozen=True)
class InterruptionEventsSettings:
    """How interruption warnings are routed and handled. Defaults are safe and act.

    - ``handler_mode``: ``lambda`` (default: a Lambda consumes the queue) or ``queue`` (no Lambda; run
      ``spotkit handle-events --queue-url`` yourself, on a role given ``grant_consume``).
    - ``dry_run``: the handler reads but changes nothing ("would have ..." in its logs). Default off;
      on gets a warning.
    - ``checkpoint_command``: run on the instance by SSM Run Command (AWS-RunShellScript). Default: the
      hook ``/opt/spotkit/hooks/checkpoint`` when present. Empty: no checkpoint.
    - ``checkpoint_on_rebalance`` (default on), ``drain_on_rebalance`` (default off),
      ``start_replacement_on_rebalance`` (default off; adds autoscaling:SetDesiredCapacity and tagging
      of the groups' instances to the handler's role).
    - ``ecs_clusters``: clusters the handler looks in and may drain in (names). Default: the stack's own
      cluster (``ecs_spot``, ``gpu_inference``); with none, every cluster is looked in, and only container
      instances tagged with one of the groups may be set DRAINING.
    - ``target_group_arns``: target groups it may deregister from, besides the stack's own (those tagged
      ``spotkit:name=<name>``, which every target group of a spotkit stack is). Default: only the stack's.
    - ``lifecycle_result``: CONTINUE (default) or ABANDON when it completes a lifecycle action.
    - ``lambda_timeout_seconds``: 30-900; covers the wait for a terminating instance to drain (the
      group's lifecycle heartbeat, 300 s by default; a batch waits for its instances together). Default
      360. The queue's visibility timeout is 6x this, as AWS recommends for an SQS event source (see
      ``InterruptionDelivery``).
    - ``lambda_memory_mib``: default 256.
    - ``lambda_reserved_concurrency``: concurrent handlers reserved for (and capped at) this; the event
      source mapping's maximum concurrency is set to the same. Default 10: a wave of 1,000 notices is 100
      batches, ~10 s of work at 10 at once. None: nothing reserved (an account whose concurrency quota
      is still 10 cannot reserve any), the mapping is still capped at 10. 2-1000.
    - ``batch_size``: messages per invocation, 1-100 (more than 10 needs a batching window). Default 10.
    - ``maximum_batching_window_seconds``: how long the mapping gathers a batch, 0-300. Default 1.
    - ``message_retention_seconds``: the queue, 300 s-14 days. Default 1 day (a warning older than that
      is moot). ``dlq_retention_seconds``: default 14 days, at least the queue's.
    - ``max_receive_count``: deliveries before a message moves to the DLQ, 1-1000. Default 5.
    - ``kms_key_arn``: encrypt the queues and the journal with this key (its policy must let EventBridge use
      it): a key ARN, key id, alias name or alias ARN (the last three are resolved to the key ARN with
      ``data "aws_kms_key"``). Default: SSE-SQS (SQS-owned keys).
    - ``log_retention_days``: the Lambda's log group. Default 30.
    - ``create_fis_templates``: one experiment template per group. Default on.
    - ``fis_duration_before_interruption``: ISO-8601 minutes, PT2M-PT15M. Default PT2M (as AWS does).
    - ``fis_selection_mode``: which of the group's running spot instances: COUNT(n), PERCENT(n) or ALL.
      Default COUNT(1).
    """

    handler_mode: str = "lambda"
    dry_run: bool = False
    checkpoint_command: str = DEFAULT_CHECKPOINT_COMMAND
    checkpoint_on_rebalance: bool = True
    drain_on_rebalance: bool = False
    start_replacement_on_rebalance: bool = False
    ecs_clusters: tuple[str, ...] = ()
    target_group_arns: tuple[str, ...] = ()
    lifecycle_result: str = "CONTINUE"
    lambda_timeout_seconds: int = 360
    lambda_memory_mib: int = 256
    lambda_reserved_concurrency: Optional[int] = 10
    batch_size: int = 10
    maximum_batching_window_seconds: int = 1
    message_retention_seconds: int = 86400
    dlq_retention_seconds: int = 1209600
    max_receive_count: int = 5
    kms_key_arn: Optional[str] = None
    log_retention_days: int = 30
    create_fis_templates: bool = True
    fis_duration_before_interruption: str = "PT2M"
    fis_selection_mode: str = "COUNT(1)"


def validate_settings(name: str, groups: Sequence[str], s: InterruptionEventsSettings) -> None:
    where = f"InterruptionEvents {name!r}"
    if not _NAME.match(name):
        raise ValidationError(f"{where}: name must be 2-40 lowercase letters, digits or hyphens, starting with a letter")
    if not groups:
        raise ValidationError(f"{where}: groups is empty: give the names of the Auto Scaling groups whose "
                              "interruptions to handle")
    if s.handler_mode not in HANDLER_MODES:
        raise ValidationError(f"{where}: handler_mode {s.handler_mode!r} is not one of {', '.join(HANDLER_MODES)}")
    if s.lifecycle_result not in ("CONTINUE", "ABANDON"):
        raise ValidationError(f"{where}: lifecycle_result must be CONTINUE or ABANDON (got {s.lifecycle_result!r})")
    if not 30 <= s.lambda_timeout_seconds <= 900:
        raise ValidationError(f"{where}: lambda_timeout_seconds must be between 30 and 900 (got "
                              f"{s.lambda_timeout_seconds}); 360 covers the default 300 s drain")
    if not 128 <= s.lambda_memory_mib <= 10240:
        raise ValidationError(f"{where}: lambda_memory_mib must be between 128 and 10240 (got {s.lambda_memory_mib})")
    if not 1 <= s.batch_size <= 100:
        raise ValidationError(f"{where}: batch_size must be between 1 and 100 (got {s.batch_size})")
    if not 0 <= s.maximum_batching_window_seconds <= 300:
        raise ValidationError(f"{where}: maximum_batching_window_seconds must be between 0 and 300 (got "
                              f"{s.maximum_batching_window_seconds})")
    if s.batch_size > 10 and s.maximum_batching_window_seconds < 1:
        raise ValidationError(f"{where}: batch_size {s.batch_size} needs maximum_batching_window_seconds of 1 or "
                              "more (SQS hands out at most 10 messages at once without a batching window)")
    if s.lambda_reserved_concurrency is not None and not 2 <= s.lambda_reserved_concurrency <= 1000:
        raise ValidationError(f"{where}: lambda_reserved_concurrency must be between 2 and 1000, or None for "
                              f"no reservation (got {s.lambda_reserved_concurrency})")
    if not 300 <= s.message_retention_seconds <= 1209600:
        raise ValidationError(f"{where}: message_retention_seconds must be between 300 and 1209600 (got "
                              f"{s.message_retention_seconds}): a warning must outlive its two minutes")
    if not s.message_retention_seconds <= s.dlq_retention_seconds <= 1209600:
        raise ValidationError(f"{where}: dlq_retention_seconds ({s.dlq_retention_seconds}) must be at least "
                              f"message_retention_seconds ({s.message_retention_seconds}) and at most 1209600, or "
                              "messages expire in the dead-letter queue before anyone sees them")
    if not 1 <= s.max_receive_count <= 1000:
        raise ValidationError(f"{where}: max_receive_count must be between 1 and 1000 (got {s.max_receive_count})")
    m = _DURATION.match(s.fis_duration_before_interruption)
    if not m or not 2 <= int(m.group(1)) <= 15:
        raise ValidationError(f"{where}: fis_duration_before_interruption must be PT2M to PT15M (got "
                              f"{s.fis_duration_before_interruption!r})")
    if not _SELECTION.match(s.fis_selection_mode):
        raise ValidationError(f"{where}: fis_selection_mode must be COUNT(n), PERCENT(n) or ALL (got {s.fis_selection_mode!r})")
    bad = [a for a in s.target_group_arns if not a.startswith("arn:") or ":targetgroup/" not in a]
    if bad:
        raise ValidationError(f"{where}: target_group_arns must be target group ARNs (check {', '.join(bad)})")
