"""Interruption event routing: every warning AWS sends about a group's instances, delivered once to the
spotkit handler (``toolkit/runtime/interruption``), journaled, and rehearsed with AWS FIS.

What it creates (one construct, ``InterruptionEvents``, of five parts, each a sub-construct in a module
of this package):
- ``rules``: six EventBridge rules: ``EC2 Spot Instance Interruption Warning``, ``EC2 Instance Rebalance
  Recommendation``, ``EC2 Instance State-change Notification`` (stopping, shutting-down, stopped,
  terminated), ``AWS Health Event`` (EC2 scheduled changes), ``EC2 Instance-terminate Lifecycle Action``
  (aws.autoscaling; scoped to the groups by name) and ``EC2 Capacity Reservation Instance Interruption
  Warning``. EC2 events carry only an instance id, so EventBridge cannot scope them to a group: the
  handler ignores instances without the group's tags;
- ``delivery``: their target, an SQS queue: encrypted (SSE-SQS, or the KMS key given), a dead-letter queue
  with a redrive policy (and a redrive-allow policy naming only this queue), and a queue policy that lets
  only these EventBridge rules send;
- ``handler``: a Lambda packaged at synthesis from ``toolkit/`` (``packaging``: ``TerraformAsset``, no zip
  in the repo) consuming the queue through an event source mapping that reports batch item failures: one
  delivery path with retries and a DLQ, instead of a second, asynchronous EventBridge->Lambda path. With
  ``handler_mode="queue"`` there is no Lambda: run ``spotkit handle-events --queue-url`` on a host
  whose role got ``grant_consume(role)``;
- ``journal``: a DynamoDB table (``pk``/``sk``, TTL ``expires_at``) that de-duplicates events;
- with ``fallback`` (``spotkit.constructs.capacity_fallback``), in ``rules``: a rule for the groups' ``EC2
  Instance Launch Unsuccessful`` events, one for ``SERVICE_TASK_PLACEMENT_FAILURE`` service actions of the
  ECS clusters given (``placement_clusters``), and a scheduled rule sending the return check every
  ``check_every_minutes``, all to the same queue; the handler may then change the groups' on-demand base
  and fallback tags;
- ``fire_drill``: per group, an AWS FIS experiment template ``aws:ec2:send-spot-instance-interruptions``
  targeting the group's spot instances by the ``spotkit:group`` tag, stopped by an alarm on the dead-letter
  queue (the handler failing), with its own role.

IAM is least privilege (``policy``): no ``*`` in any action; resources are the queue, the table, the groups, the
check-pointing document, instances tagged with the groups, the stack's target groups (tagged with its
name, or listed) and its ECS clusters; ``*`` only for read calls AWS does not scope
(``ec2:DescribeInstances``, ``elasticloadbalancing:DescribeTargetGroups``/``DescribeTargetHealth``,
``ecs:ListClusters``, ``ssm:ListCommands``/``GetCommandInvocation``, ``autoscaling:DescribeAutoScalingGroups``).

A stack deployed before the split keeps its resources: each sub-construct's resources keep the address
they had directly in ``InterruptionEvents`` (``spotkit.constructs.addresses``; checked by
tests/test_interruption_split.py). The data sources and the handler's package asset stay here.
"""

from __future__ import annotations

from typing import Optional, Sequence

from constructs import Construct

from spotkit.constructs.annotations import warn
from spotkit.constructs.capacity_fallback import FallbackSettings, validate_fallback
from spotkit.constructs.interruption_events.context import aws_context
from spotkit.constructs.interruption_events.delivery import InterruptionDelivery
from spotkit.constructs.interruption_events.fire_drill import InterruptionFireDrill
from spotkit.constructs.interruption_events.handler import InterruptionHandler, handler_environment
from spotkit.constructs.interruption_events.journal import InterruptionJournal
from spotkit.constructs.interruption_events.packaging import handler_code
from spotkit.constructs.interruption_events.policy import handler_policy
from spotkit.constructs.interruption_events.rules import InterruptionRules, fallback_patterns, rule_patterns
from spotkit.constructs.interruption_events.settings import InterruptionEventsSettings, validate_settings
from spotkit.constructs.kms import key_arn

# Every name this module had before it became a package stays importable from it (users import
# from here; tests/test_interruption_split.py lists them).
from spotkit.constructs.interruption_events.delivery import VISIBILITY_TIMEOUT_MULTIPLE  # noqa: F401
from spotkit.constructs.interruption_events.handler import (  # noqa: F401
    DEFAULT_MAXIMUM_CONCURRENCY,
    LAMBDA_HANDLER,
    LAMBDA_RUNTIME,
)
from spotkit.constructs.interruption_events.packaging import (  # noqa: F401
    _PRIVATE_STAGINGS,
    _cached_tree_digest,
    _remove_private_stagings,
    _tree_digest,
    build_lambda_source,
    lambda_cache_root,
    lambda_source_files,
)
from spotkit.constructs.interruption_events.policy import CHECKPOINT_DOCUMENT  # noqa: F401
from spotkit.constructs.interruption_events.settings import _DURATION, _NAME, _SELECTION, HANDLER_MODES  # noqa: F401
from spotkit.constructs.runtime_sources import runtime_sources  # noqa: F401
from spotkit.errors import ValidationError  # noqa: F401
from spotkit.runtime.interruption import events  # noqa: F401
from spotkit.runtime.notice import (  # noqa: F401
    DEFAULT_CHECKPOINT_COMMAND,
    TAG_GROUP,
    TAG_NAME,
    TAG_REPLACEMENT_REQUESTED,
)

GROUP_TAG = TAG_GROUP


class InterruptionEvents(Construct):
    """Routes a set of groups' interruption warnings to the spotkit handler.

    Parts (sub-constructs): ``journal_store``, ``delivery``, ``routing`` (the rules), ``handler`` and, with
    ``create_fis_templates``, ``fire_drill``. Their resources are here too, by the names they always had:
    ``journal`` (the table), ``queue``, ``dlq``, ``visibility_timeout``, ``rules``, ``function`` (None in queue
    mode), ``role``/``lambda_policy``/``code``/``event_source`` (lambda mode), ``stop_alarm``/``fis_role``
    and ``fis_templates`` (by group; empty without FIS).

    Capabilities:
    - ``grant_consume(role_name)``: give a role what ``spotkit handle-events`` needs (queue mode).
    - ``handler_policy``: the handler's IAM policy document (a dict), for review.
    """

    def __init__(self, scope: Construct, id_: str, *, name: str, groups: Sequence[str],
                 settings: InterruptionEventsSettings = InterruptionEventsSettings(),
                 fallback: Optional[FallbackSettings] = None, placement_clusters: Sequence[str] = ()):
        validate_settings(name, groups, settings)
        validate_fallback(f"InterruptionEvents {name!r}", fallback or FallbackSettings(enabled=False))
        super().__init__(scope, id_)
        self.name = name
        self.groups = list(groups)
        self.settings = settings
        self.fallback = fallback if fallback is not None and fallback.enabled else None
        self.placement_clusters = list(placement_clusters)
        self._warn_risky_settings()
        ctx = aws_context(self)
        self.account, self.partition, self.region = ctx.account, ctx.partition, ctx.region
        # A key given by id or alias is resolved to its ARN (IAM matches key ARNs only; never widened to *).
        self.kms_key_arn = key_arn(self, "queue-key", settings.kms_key_arn) if settings.kms_key_arn else None
        self.journal_store = InterruptionJournal(self, "journal", name=name, kms_key_arn=self.kms_key_arn)
        self.journal = self.journal_store.table
        self.delivery = InterruptionDelivery(self, "delivery", name=name, settings=settings,
                                             kms_key_arn=self.kms_key_arn)
        self.queue, self.dlq = self.delivery.queue, self.delivery.dlq
        self.visibility_timeout = self.delivery.visibility_timeout
        self.routing = InterruptionRules(self, "rules", name=name, groups=self.groups, queue_arn=self.queue.arn,
                                         fallback=self.fallback, placement_clusters=self.placement_clusters)
        self.rules = self.routing.rules
        self.delivery.allow_senders([r.arn for r in self.rules.values()])
        self.handler_policy = handler_policy(ctx, name=name, groups=self.groups, settings=settings,
                                             fallback=self.fallback, queue_arns=[self.queue.arn, self.dlq.arn],
                                             journal_arn=self.journal.arn, kms_key_arn=self.kms_key_arn)
        self._create_handler()
        self.fis_templates = {}
        if settings.create_fis_templates:
            self.fire_drill = InterruptionFireDrill(self, "fire-drill", ctx=ctx, name=name, groups=self.groups,
                                                    settings=settings, dlq_name=self.dlq.name)
            self.stop_alarm, self.fis_role = self.fire_drill.stop_alarm, self.fire_drill.role
            self.fis_templates = self.fire_drill.templates

    def _warn_risky_settings(self) -> None:
        name, settings = self.name, self.settings
        if settings.dry_run:
            warn(self, f"InterruptionEvents {name!r}: dry_run is on: the handler journals what it would do "
                       "and does nothing; instances will not be drained before they are reclaimed.")
        if settings.handler_mode == "queue":
            warn(self, f"InterruptionEvents {name!r}: handler_mode='queue' creates no Lambda: nothing handles "
                       "warnings until you run 'spotkit handle-events --queue-url <queue_url>' on a role given "
                       "grant_consume().")
        if not settings.checkpoint_command:
            warn(self, f"InterruptionEvents {name!r}: checkpoint_command is empty: instances are drained but "
                       "never asked to checkpoint.")

    def _create_handler(self) -> None:
        """The handler (a Lambda in lambda mode, its package asset here: see ``packaging.handler_code``)."""
        lambda_mode = self.settings.handler_mode == "lambda"
        code = handler_code(self) if lambda_mode else None
        self.handler = InterruptionHandler(
            self, "handler", name=self.name, groups=self.groups, settings=self.settings, policy=self.handler_policy,
            environment=handler_environment(journal_name=self.journal.name, groups=self.groups,
                                            settings=self.settings, fallback=self.fallback),
            queue_arn=self.queue.arn, code=code)
        self.function = self.handler.function
        if lambda_mode:
            self.code, self.role, self.event_source = code, self.handler.role, self.handler.event_source
            self.lambda_policy = self.handler.lambda_policy

    # --- capabilities ---------------------------------------------------------------------------

    def rule_patterns(self) -> dict[str, dict]:
        """The six rules' event patterns, by rule id: generated from the parser's table
        (``spotkit.runtime.interruption.events.event_pattern``), so a rule matches what the handler parses."""
        return rule_patterns(self.groups)

    def fallback_patterns(self) -> dict[str, dict]:
        """The capacity rules' event patterns (none without ``fallback``), by rule id."""
        return fallback_patterns(self.groups, self.fallback, self.placement_clusters)

    def grant_consume(self, role_name: str, id_: str = "consumer-policy"):
        """Let ``role_name`` run ``spotkit handle-events --queue-url`` on this queue (queue mode)."""
        return self.handler.grant_consume(role_name, id_)

    @property
    def queue_url(self) -> str:
        return self.queue.url
