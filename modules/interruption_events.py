"""Interruption event routing: every warning AWS sends about a group's instances, delivered once to the
spotkit handler (``toolkit/runtime/interruption``), journaled, and rehearsed with AWS FIS.

What it creates (one construct):
- six EventBridge rules: ``EC2 Spot Instance Interruption Warning``, ``EC2 Instance Rebalance
  Recommendation``, ``EC2 Instance State-change Notification`` (stopping, shutting-down, stopped,
  terminated), ``AWS Health Event`` (EC2 scheduled changes), ``EC2 Instance-terminate Lifecycle Action``
  (aws.autoscaling; scoped to the groups by name) and ``EC2 Capacity Reservation Instance Interruption
  Warning``. EC2 events carry only an instance id, so EventBridge cannot scope them to a group: the
  handler ignores instances without the group's tags;
- their target, an SQS queue: encrypted (SSE-SQS, or the KMS key given), a dead-letter queue with a
  redrive policy (and a redrive-allow policy naming only this queue), and a queue policy that lets only
  these EventBridge rules send;
- the handler, a Lambda packaged at synthesis from ``toolkit/`` (``TerraformAsset``, no zip in the repo)
  consuming the queue through an event source mapping that reports batch item failures: one delivery
  path with retries and a DLQ, instead of a second, asynchronous EventBridge->Lambda path. With
  ``handler_mode="queue"`` there is no Lambda: run ``spotkit handle-events --queue-url`` on a host
  whose role got ``grant_consume(role)``;
- the journal, a DynamoDB table (``pk``/``sk``, TTL ``expires_at``) that de-duplicates events;
- with ``fallback`` (``spotkit.constructs.capacity_fallback``): a rule for the groups' ``EC2 Instance Launch
  Unsuccessful`` events, one for ``SERVICE_TASK_PLACEMENT_FAILURE`` service actions of the ECS clusters
  given (``placement_clusters``), and a scheduled rule sending the return check every
  ``check_every_minutes``, all to the same queue; the handler may then change the groups' on-demand base
  and fallback tags;
- per group, an AWS FIS experiment template ``aws:ec2:send-spot-instance-interruptions`` targeting the
  group's spot instances by the ``spotkit:group`` tag, stopped by an alarm on the dead-letter queue
  (the handler failing), with its own role.

IAM is least privilege: no ``*`` in any action; resources are the queue, the table, the groups, the
check-pointing document, instances tagged with the groups, the stack's target groups (tagged with its
name, or listed) and its ECS clusters; ``*`` only for read calls AWS does not scope
(``ec2:DescribeInstances``, ``elasticloadbalancing:DescribeTargetGroups``/``DescribeTargetHealth``,
``ecs:ListClusters``, ``ssm:ListCommands``/``GetCommandInvocation``, ``autoscaling:DescribeAutoScalingGroups``).
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from constructs import Construct

from spotkit.constructs.annotations import warn
from spotkit.constructs.capacity_fallback import FallbackSettings, validate_fallback
from spotkit.constructs.kms import key_arn
from spotkit.constructs.runtime_sources import runtime_sources
from spotkit.errors import ValidationError
from spotkit.runtime.interruption import events  # standard library only: synthesis loads no botocore
from spotkit.runtime.notice import DEFAULT_CHECKPOINT_COMMAND, TAG_GROUP, TAG_NAME, TAG_REPLACEMENT_REQUESTED

GROUP_TAG = TAG_GROUP
HANDLER_MODES = ("lambda", "queue")
LAMBDA_HANDLER = "spotkit.runtime.interruption.lambda_entry.handler"
LAMBDA_RUNTIME = "python3.12"
CHECKPOINT_DOCUMENT = "AWS-RunShellScript"
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,38}[a-z0-9]$")
_DURATION = re.compile(r"^PT(\d+)M$")
_SELECTION = re.compile(r"^(ALL|COUNT\(\d+\)|PERCENT\((100|[1-9]\d?)\))$")


VISIBILITY_TIMEOUT_MULTIPLE = 6   # AWS: an SQS event source's queue visibility >= 6x the function timeout
DEFAULT_MAXIMUM_CONCURRENCY = 10  # the event source mapping's cap when nothing is reserved


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
      ``_create_queues``).
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


def lambda_source_files() -> list[tuple[str, Path]]:
    """What the handler's package holds (name in the package, source): ``runtime/interruption/`` with its
    contract (``runtime_sources``)."""
    return runtime_sources("interruption")


def _tree_digest(files: Sequence[tuple[str, Path]]) -> str:
    """sha256 over the files' names and bytes, in the order of their names (the sources' listing and a
    cached folder's walk list them in different orders: the digest must not depend on it)."""
    digest = hashlib.sha256()
    for name, f in sorted(files):
        digest.update(name.encode() + b"\0" + f.read_bytes() + b"\0")
    return digest.hexdigest()


def _cached_tree_digest(folder: Path) -> Optional[str]:
    """The digest of what ``folder`` holds now (every file, sorted), or None when it holds anything but
    regular files and folders (a symlink could point a later build anywhere)."""
    entries = sorted(folder.rglob("*"))
    if any(p.is_symlink() or not (p.is_file() or p.is_dir()) for p in entries):
        return None
    return _tree_digest([(p.relative_to(folder).as_posix(), p) for p in entries if p.is_file()])


def lambda_cache_root() -> Optional[Path]:
    """The private cache of staged packages: ``$SPOTKIT_CACHE_DIR`` or ``$XDG_CACHE_HOME/spotkit`` (default
    ``~/.cache/spotkit``), folder ``lambda``, mode 0700 and owned by us; None when that cannot be had
    (then every build stages into a fresh private temporary folder)."""
    base = os.environ.get("SPOTKIT_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "spotkit")
    root = Path(base) / "lambda"
    try:
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = root.lstat()
        if root.is_symlink() or not root.is_dir() or st.st_uid != os.getuid():
            return None
        if st.st_mode & 0o077:
            os.chmod(root, 0o700)
        return root
    except OSError:
        return None


def build_lambda_source(cache_root: Optional[Path] = None) -> Path:
    """Stage the handler's code (``lambda_source_files``) for ``TerraformAsset``
    to zip at synthesis; boto3 is in the runtime.

    Staged in a private folder (0700, ``tempfile.mkdtemp``) and kept in a content-addressed cache folder
    named by the SHA-256 of the sources (``lambda_cache_root``, 0700, ours). A cached package is reused only
    when the digest of what it holds now equals its name. Never a predictable shared temporary path.

    Shared by every checkout and process of the user, so safe under concurrency: an entry appears in one
    rename of a complete folder and is never moved or deleted by a build, because another synthesis may
    be zipping it at that moment (cdktn zips the folder later, at ``app.synth()``). An entry that does not
    verify (edited, linked, or written into) is left alone; this build stages its own private copy
    instead, removed when the process exits."""
    files = lambda_source_files()
    digest = _tree_digest(files)
    cache = cache_root if cache_root is not None else lambda_cache_root()
    target = cache / digest if cache is not None else None
    if target is not None and target.is_dir() and not target.is_symlink() and _cached_tree_digest(target) == digest:
        return target
    staging = Path(tempfile.mkdtemp(prefix="spotkit-lambda-", dir=cache))  # 0700
    for name, f in files:
        dest = staging / name
        dest.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        shutil.copyfile(f, dest)
    if target is not None and not os.path.lexists(target):
        try:
            os.rename(staging, target)  # fails when another build published first: then use theirs if sound
            return target
        except OSError:
            if target.is_dir() and not target.is_symlink() and _cached_tree_digest(target) == digest:
                shutil.rmtree(staging, ignore_errors=True)
                return target
    _PRIVATE_STAGINGS.append(staging)
    return staging


_PRIVATE_STAGINGS: list[Path] = []


@atexit.register
def _remove_private_stagings() -> None:
    for path in _PRIVATE_STAGINGS:
        shutil.rmtree(path, ignore_errors=True)


class InterruptionEvents(Construct):
    """Routes a set of groups' interruption warnings to the spotkit handler.

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
        self._context()
        # A key given by id or alias is resolved to its ARN (IAM matches key ARNs only; never widened to *).
        self.kms_key_arn = key_arn(self, "queue-key", settings.kms_key_arn) if settings.kms_key_arn else None
        self._create_journal()
        self._create_queues()
        self._create_rules()
        self._create_fallback_schedule()
        self._create_queue_policy()
        self.handler_policy = self._policy_document()
        self.function = None
        if settings.handler_mode == "lambda":
            self._create_lambda()
        self.fis_templates = {}
        if settings.create_fis_templates:
            self._create_fis()

    # --- context --------------------------------------------------------------------------------

    def _context(self) -> None:
        from cdktn_aws.sts import DataAwsCallerIdentity
        from cdktn_aws.meta_data_sources import DataAwsPartition, DataAwsRegion

        self.account = DataAwsCallerIdentity(self, "account").account_id
        self.partition = DataAwsPartition(self, "partition").partition
        self.region = DataAwsRegion(self, "region").name

    def _arn(self, service: str, resource: str, *, region: bool = True, account: bool = True) -> str:
        return (f"arn:{self.partition}:{service}:{self.region if region else ''}:"
                f"{self.account if account else ''}:{resource}")

    # --- resources ------------------------------------------------------------------------------

    def _create_journal(self) -> None:
        from cdktn_aws.dynamodb import AwsTable as DynamodbTable

        self.journal = DynamodbTable(
            self, "journal",
            name=f"{self.name}-interruption-journal",
            billing_mode="PAY_PER_REQUEST",
            hash_key="pk", range_key="sk",
            attribute=[DynamodbTable.AttributeProperty(name="pk", type="S"), DynamodbTable.AttributeProperty(name="sk", type="S")],
            ttl=DynamodbTable.TtlProperty(attribute_name="expires_at", enabled=True),
            point_in_time_recovery=DynamodbTable.PointInTimeRecoveryProperty(enabled=True),
            server_side_encryption=DynamodbTable.ServerSideEncryptionProperty(
                enabled=True, **({"kms_key_arn": self.kms_key_arn} if self.kms_key_arn else {})),
        )

    def _encryption(self) -> dict:
        if self.kms_key_arn:
            return {"kms_master_key_id": self.kms_key_arn, "kms_data_key_reuse_period_seconds": 300}
        return {"sqs_managed_sse_enabled": True}

    def _create_queues(self) -> None:
        from cdktn_aws.sqs import AwsQueue as SqsQueue, AwsQueueRedriveAllowPolicy as SqsQueueRedriveAllowPolicy

        s = self.settings
        # Visibility 6x the function timeout (AWS's advice for an SQS event source): a batch the Lambda
        # service had to retry (throttled at the concurrency cap) must not become visible to a second
        # invocation while the first still handles it. A message the handler reports to retry comes back
        # sooner: lambda_entry shortens its visibility itself (RETRY_VISIBILITY_SECONDS).
        self.visibility_timeout = VISIBILITY_TIMEOUT_MULTIPLE * s.lambda_timeout_seconds
        self.dlq = SqsQueue(self, "dlq", name=f"{self.name}-interruptions-dlq",
                            message_retention_seconds=s.dlq_retention_seconds, **self._encryption())
        self.queue = SqsQueue(
            self, "queue", name=f"{self.name}-interruptions",
            message_retention_seconds=s.message_retention_seconds,
            visibility_timeout_seconds=self.visibility_timeout,
            receive_wait_time_seconds=20,
            redrive_policy=json.dumps({"deadLetterTargetArn": self.dlq.arn, "maxReceiveCount": s.max_receive_count}),
            **self._encryption(),
        )
        SqsQueueRedriveAllowPolicy(self, "dlq-redrive-allow", queue_url=self.dlq.url, redrive_allow_policy=json.dumps(
            {"redrivePermission": "byQueue", "sourceQueueArns": [self.queue.arn]}))

    def rule_patterns(self) -> dict[str, dict]:
        """The six rules' event patterns, by rule id: generated from the parser's table
        (``spotkit.runtime.interruption.events.event_pattern``), so a rule matches what the handler parses."""
        return {
            "spot-interruption": events.event_pattern(events.SPOT_INTERRUPTION),
            "rebalance": events.event_pattern(events.REBALANCE_RECOMMENDATION),
            "state-change": events.event_pattern(events.STATE_CHANGE),
            "scheduled-change": events.event_pattern(events.SCHEDULED_CHANGE),
            "asg-terminate": events.event_pattern(events.LIFECYCLE_TERMINATE, AutoScalingGroupName=list(self.groups)),
            "capacity-reservation": events.event_pattern(events.CAPACITY_RESERVATION_INTERRUPTION),
        }

    def _create_rules(self) -> None:
        from cdktn_aws.eventbridge import AwsRule as CloudwatchEventRule, AwsTarget as CloudwatchEventTarget

        self.rules = {}
        for rule_id, pattern in {**self.rule_patterns(), **self.fallback_patterns()}.items():
            rule = CloudwatchEventRule(
                self, f"rule-{rule_id}", name=f"{self.name}-{rule_id}"[:64],
                description=f"spotkit {self.name}: {pattern['detail-type'][0]} -> interruption queue",
                event_pattern=json.dumps(pattern))
            CloudwatchEventTarget(self, f"target-{rule_id}", rule=rule.name, target_id="spotkit-interruption-queue",
                                  arn=self.queue.arn)
            self.rules[rule_id] = rule

    def fallback_patterns(self) -> dict[str, dict]:
        """The capacity rules' event patterns (none without ``fallback``), by rule id."""
        if self.fallback is None:
            return {}
        patterns = {"launch-failure": events.event_pattern(events.LAUNCH_FAILURE,
                                                           AutoScalingGroupName=list(self.groups))}
        if self.placement_clusters:
            patterns["placement-failure"] = events.event_pattern(events.PLACEMENT_FAILURE,
                                                                 clusterArn=list(self.placement_clusters))
        return patterns

    def _create_fallback_schedule(self) -> None:
        """The return check: a scheduled rule whose event (``Scheduled Event``) goes to the queue."""
        from cdktn_aws.eventbridge import AwsRule as CloudwatchEventRule, AwsTarget as CloudwatchEventTarget

        if self.fallback is None:
            return
        rule = CloudwatchEventRule(
            self, "rule-fallback-check", name=f"{self.name}-fallback-check"[:64],
            description=f"spotkit {self.name}: return-to-spot check every {self.fallback.check_every_minutes} min "
                        "-> interruption queue",
            schedule_expression=self.fallback.schedule_expression)
        CloudwatchEventTarget(self, "target-fallback-check", rule=rule.name, target_id="spotkit-interruption-queue",
                              arn=self.queue.arn)
        self.rules["fallback-check"] = rule

    def _create_queue_policy(self) -> None:
        from cdktn_aws.sqs import AwsQueuePolicy as SqsQueuePolicy

        rule_arns = [r.arn for r in self.rules.values()]
        SqsQueuePolicy(self, "queue-policy", queue_url=self.queue.url, policy=json.dumps({
            "Version": "2012-10-17",
            "Statement": [
                {"Sid": "EventBridgeRulesOnly", "Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"},
                 "Action": "sqs:SendMessage", "Resource": self.queue.arn,
                 "Condition": {"ArnEquals": {"aws:SourceArn": rule_arns}}},
                {"Sid": "NoOtherSenders", "Effect": "Deny", "Principal": "*", "Action": "sqs:SendMessage",
                 "Resource": self.queue.arn, "Condition": {"ArnNotEquals": {"aws:SourceArn": rule_arns}}},
            ],
        }))

    def _policy_document(self) -> dict:
        s = self.settings
        group_arns = [self._arn("autoscaling", f"autoScalingGroup:*:autoScalingGroupName/{g}") for g in self.groups]
        clusters = list(s.ecs_clusters)
        statements = [
            {"Sid": "Queue", "Effect": "Allow",
             "Action": ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes"],
             "Resource": [self.queue.arn, self.dlq.arn]},
            {"Sid": "Journal", "Effect": "Allow",
             "Action": ["dynamodb:UpdateItem", "dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:Query",
                        "dynamodb:BatchWriteItem"],
             "Resource": [self.journal.arn]},
            {"Sid": "ReadOnlyUnscoped", "Effect": "Allow",
             "Action": ["ec2:DescribeInstances", "elasticloadbalancing:DescribeTargetGroups",
                        "elasticloadbalancing:DescribeTargetHealth", "ecs:ListClusters", "ssm:ListCommands",
                        "ssm:GetCommandInvocation", "autoscaling:DescribeAutoScalingGroups",
                        # The lifecycle deadline is the hook's heartbeat timeout (read once per hook).
                        "autoscaling:DescribeLifecycleHooks"],
             "Resource": ["*"]},
            # Only the stack's target groups: those listed, and any carrying the stack's name tag (every
            # target group a spotkit stack creates has it through the provider's default tags).
            *([{"Sid": "DeregisterListed", "Effect": "Allow", "Action": ["elasticloadbalancing:DeregisterTargets"],
                "Resource": list(s.target_group_arns)}] if s.target_group_arns else []),
            {"Sid": "DeregisterOwnTargetGroups", "Effect": "Allow", "Action": ["elasticloadbalancing:DeregisterTargets"],
             "Resource": [self._arn("elasticloadbalancing", "targetgroup/*/*")],
             "Condition": {"StringEquals": {f"aws:ResourceTag/{TAG_NAME}": self.name}}},
            *self._ecs_statements(clusters),
            {"Sid": "CheckpointDocument", "Effect": "Allow", "Action": ["ssm:SendCommand"],
             "Resource": [self._arn("ssm", f"document/{CHECKPOINT_DOCUMENT}", account=False)]},
            {"Sid": "CheckpointOwnInstances", "Effect": "Allow", "Action": ["ssm:SendCommand"],
             "Resource": [self._arn("ec2", "instance/*")],
             "Condition": {"StringEquals": {f"aws:ResourceTag/{GROUP_TAG}": list(self.groups)}}},
            {"Sid": "CompleteLifecycle", "Effect": "Allow",
             "Action": ["autoscaling:CompleteLifecycleAction", "autoscaling:RecordLifecycleActionHeartbeat"],
             "Resource": group_arns},
        ]
        if s.start_replacement_on_rebalance:
            statements += [
                {"Sid": "StartReplacement", "Effect": "Allow", "Action": ["autoscaling:SetDesiredCapacity"],
                 "Resource": group_arns},
                {"Sid": "MarkReplaced", "Effect": "Allow", "Action": ["ec2:CreateTags"],
                 "Resource": [self._arn("ec2", "instance/*")],
                 "Condition": {"StringEquals": {f"aws:ResourceTag/{GROUP_TAG}": list(self.groups)},
                               "ForAllValues:StringEquals": {"aws:TagKeys": [TAG_REPLACEMENT_REQUESTED]}}},
            ]
        if self.fallback is not None:
            statements += [
                {"Sid": "FallbackRead", "Effect": "Allow",
                 "Action": ["autoscaling:DescribeScalingActivities", "ec2:GetSpotPlacementScores",
                            "ecs:DescribeClusters", "ecs:DescribeCapacityProviders"],
                 "Resource": ["*"]},
                {"Sid": "FallbackSplit", "Effect": "Allow",
                 "Action": ["autoscaling:UpdateAutoScalingGroup", "autoscaling:CreateOrUpdateTags",
                            "autoscaling:DeleteTags"],
                 "Resource": group_arns},
                # UpdateAutoScalingGroup with a launch template (the mixed instances policy names it) is checked
                # against the caller's right to use it: RunInstances only through a launch template, tags only
                # at launch, and passing the instance profile's role to EC2 only.
                # Scoped to this region and account (AMIs may be another account's), and only through a
                # launch template of this account.
                {"Sid": "FallbackUseLaunchTemplate", "Effect": "Allow", "Action": ["ec2:RunInstances"],
                 "Resource": [self._arn("ec2", "*"), self._arn("ec2", "image/*", account=False)],
                 "Condition": {"ArnLike": {"ec2:LaunchTemplate": self._arn("ec2", "launch-template/*")},
                               "Bool": {"ec2:IsLaunchTemplateResource": "true"}}},
                {"Sid": "FallbackTagAtLaunch", "Effect": "Allow", "Action": ["ec2:CreateTags"],
                 "Resource": [self._arn("ec2", f"{kind}/*") for kind in ("instance", "volume", "network-interface",
                                                                         "spot-instances-request")],
                 "Condition": {"StringEquals": {"ec2:CreateAction": "RunInstances"}}},
                # Only the groups' own instance roles (SpotComputeGroup names them "<group>-..."), to EC2 only.
                {"Sid": "FallbackPassInstanceRole", "Effect": "Allow", "Action": ["iam:PassRole"],
                 "Resource": [self._arn("iam", f"role/{(g + '-')[:38]}*", region=False) for g in self.groups],
                 "Condition": {"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}}},
            ]
        if self.kms_key_arn:
            statements.append({"Sid": "QueueKey", "Effect": "Allow", "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
                               "Resource": [self.kms_key_arn]})
        return {"Version": "2012-10-17", "Statement": statements}

    def _ecs_statements(self, clusters: list[str]) -> list[dict]:
        """Draining: in the named clusters only. With no cluster named, the handler looks in every cluster
        (listing and describing are reads), and may set DRAINING only on container instances tagged with one
        of the groups (spotkit's ECS hosts propagate their EC2 tags to the container instance)."""
        if clusters:
            return [
                {"Sid": "EcsList", "Effect": "Allow", "Action": ["ecs:ListContainerInstances"],
                 "Resource": [self._arn("ecs", f"cluster/{c}") for c in clusters]},
                {"Sid": "EcsDrain", "Effect": "Allow",
                 "Action": ["ecs:DescribeContainerInstances", "ecs:UpdateContainerInstancesState"],
                 "Resource": [self._arn("ecs", f"container-instance/{c}/*") for c in clusters]},
            ]
        return [
            {"Sid": "EcsList", "Effect": "Allow", "Action": ["ecs:ListContainerInstances"],
             "Resource": [self._arn("ecs", "cluster/*")]},
            {"Sid": "EcsDescribe", "Effect": "Allow", "Action": ["ecs:DescribeContainerInstances"],
             "Resource": [self._arn("ecs", "container-instance/*")]},
            {"Sid": "EcsDrainOwnGroups", "Effect": "Allow", "Action": ["ecs:UpdateContainerInstancesState"],
             "Resource": [self._arn("ecs", "container-instance/*")],
             "Condition": {"StringEquals": {f"aws:ResourceTag/{GROUP_TAG}": list(self.groups)}}},
        ]

    def _environment(self) -> dict[str, str]:
        s = self.settings
        return {
            "SPOTKIT_JOURNAL_TABLE": self.journal.name,
            "SPOTKIT_DRY_RUN": str(s.dry_run).lower(),
            "SPOTKIT_GROUPS": ",".join(self.groups),
            "SPOTKIT_CHECKPOINT_COMMAND": s.checkpoint_command,
            "SPOTKIT_CHECKPOINT_ON_REBALANCE": str(s.checkpoint_on_rebalance).lower(),
            "SPOTKIT_DRAIN_ON_REBALANCE": str(s.drain_on_rebalance).lower(),
            "SPOTKIT_START_REPLACEMENT": str(s.start_replacement_on_rebalance).lower(),
            "SPOTKIT_CLUSTERS": ",".join(s.ecs_clusters),
            "SPOTKIT_LIFECYCLE_RESULT": s.lifecycle_result,
            **(self.fallback or FallbackSettings(enabled=False)).environment(),
        }

    def _create_lambda(self) -> None:
        from cdktn import AssetType, TerraformAsset
        from cdktn_aws.cloudwatch_logs import AwsGroup as CloudwatchLogGroup
        from cdktn_aws.iam import AwsRole as IamRole, AwsRolePolicy as IamRolePolicy
        from cdktn_aws.lambda_ import AwsEventSourceMapping as LambdaEventSourceMapping, AwsFunction as LambdaFunction

        s = self.settings
        function_name = f"{self.name}-interruption-handler"[:64]
        self.role = IamRole(self, "handler-role", name_prefix=f"{self.name}-ih-"[:38], assume_role_policy=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}],
        }))
        log_group = CloudwatchLogGroup(self, "handler-logs", name=f"/aws/lambda/{function_name}",
                                       retention_in_days=s.log_retention_days)
        policy = json.loads(json.dumps(self.handler_policy))
        policy["Statement"].insert(0, {"Sid": "Logs", "Effect": "Allow",
                                       "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                                       "Resource": [f"{log_group.arn}:*"]})
        role_policy = IamRolePolicy(self, "handler-policy", name="spotkit-interruption-handler", role=self.role.id,
                                    policy=json.dumps(policy))
        self.lambda_policy = policy
        self.code = TerraformAsset(self, "handler-code", path=str(build_lambda_source()), type=AssetType.ARCHIVE)
        self.function = LambdaFunction(
            self, "handler", function_name=function_name, role=self.role.arn,
            description=f"spotkit interruption handler for {', '.join(self.groups)}",
            runtime=LAMBDA_RUNTIME, handler=LAMBDA_HANDLER,
            filename=self.code.path, source_code_hash=self.code.asset_hash,
            # Timeout: the lifecycle hook's heartbeat (300 s) a terminating batch may wait for, plus margin.
            timeout=s.lambda_timeout_seconds, memory_size=s.lambda_memory_mib,
            # Reserved concurrency: a wave must find handlers free even when other functions of the account
            # use the pool, and must not run so many at once that ELB, ECS and SSM throttle every one of them.
            reserved_concurrent_executions=s.lambda_reserved_concurrency,
            environment=LambdaFunction.EnvironmentProperty(variables=self._environment()),
            depends_on=[log_group, role_policy],
        )
        self.event_source = LambdaEventSourceMapping(
            self, "handler-source", event_source_arn=self.queue.arn, function_name=self.function.arn,
            # Batch size 10 and a 1 s window: a wave arrives within seconds, so batches fill and share their
            # AWS calls (one DescribeInstances, one DescribeTargetHealth per group... per batch) for at most
            # 1 s of a 120 s notice; a lone notice waits at most 1 s.
            batch_size=s.batch_size, maximum_batching_window_in_seconds=s.maximum_batching_window_seconds,
            # Partial batch responses: a message to retry is reported alone; the others are deleted.
            function_response_types=["ReportBatchItemFailures"],
            # Pollers invoke at most this many at once: above the reserved concurrency they would be
            # throttled, and a throttled batch counts as a receive toward the dead-letter queue.
            scaling_config=LambdaEventSourceMapping.ScalingConfigProperty(
                maximum_concurrency=s.lambda_reserved_concurrency or DEFAULT_MAXIMUM_CONCURRENCY),
        )

    def _create_fis(self) -> None:
        from cdktn_aws.cloudwatch import AwsMetricAlarm as CloudwatchMetricAlarm
        from cdktn_aws.fis import AwsExperimentTemplate as FisExperimentTemplate
        from cdktn_aws.iam import AwsRole as IamRole, AwsRolePolicy as IamRolePolicy

        s = self.settings
        self.stop_alarm = CloudwatchMetricAlarm(
            self, "handler-failing", alarm_name=f"{self.name}-interruption-handler-failing",
            alarm_description="Messages in the interruption dead-letter queue: the handler is failing. Stops FIS experiments.",
            namespace="AWS/SQS", metric_name="ApproximateNumberOfMessagesVisible",
            dimensions={"QueueName": self.dlq.name}, statistic="Maximum", period=60, evaluation_periods=1,
            threshold=1, comparison_operator="GreaterThanOrEqualToThreshold", treat_missing_data="notBreaching")
        self.fis_role = IamRole(self, "fis-role", name_prefix=f"{self.name}-fis-"[:38], assume_role_policy=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"Service": "fis.amazonaws.com"}, "Action": "sts:AssumeRole"}],
        }))
        IamRolePolicy(self, "fis-policy", name="spotkit-fis-spot-interruptions", role=self.fis_role.id, policy=json.dumps({
            "Version": "2012-10-17",
            "Statement": [
                {"Sid": "InterruptOwnSpot", "Effect": "Allow", "Action": ["ec2:SendSpotInstanceInterruptions"],
                 "Resource": [self._arn("ec2", "instance/*")],
                 "Condition": {"StringEquals": {f"aws:ResourceTag/{GROUP_TAG}": list(self.groups)}}},
                {"Sid": "FindTargets", "Effect": "Allow", "Action": ["ec2:DescribeInstances"], "Resource": ["*"]},
                {"Sid": "StopCondition", "Effect": "Allow", "Action": ["cloudwatch:DescribeAlarms"], "Resource": ["*"]},
            ],
        }))
        for group in self.groups:
            self.fis_templates[group] = FisExperimentTemplate(
                self, f"fis-{group}",
                description=f"spotkit: interrupt {s.fis_selection_mode} spot instance(s) of {group} "
                            f"({s.fis_duration_before_interruption} notice)",
                role_arn=self.fis_role.arn,
                action=[FisExperimentTemplate.ActionProperty(
                    name="interrupt-spot", action_id="aws:ec2:send-spot-instance-interruptions",
                    description="Send a spot interruption notice, then interrupt",
                    parameter=[FisExperimentTemplate.ParameterProperty(
                        key="durationBeforeInterruption", value=s.fis_duration_before_interruption)],
                    target=FisExperimentTemplate.ActionTargetProperty(key="SpotInstances", value="group-spot-instances"))],
                target=[FisExperimentTemplate.TargetProperty(
                    name="group-spot-instances", resource_type="aws:ec2:spot-instance",
                    selection_mode=s.fis_selection_mode,
                    resource_tag=[FisExperimentTemplate.ResourceTagProperty(key=GROUP_TAG, value=group)],
                    filter=[FisExperimentTemplate.FilterProperty(path="State.Name", values=["running"])])],
                stop_condition=[FisExperimentTemplate.StopConditionProperty(source="aws:cloudwatch:alarm",
                                                                   value=self.stop_alarm.arn)],
                tags={"Name": f"{self.name}-{group}-spot-interruption", GROUP_TAG: group},
            )

    # --- capabilities ---------------------------------------------------------------------------

    def grant_consume(self, role_name: str, id_: str = "consumer-policy"):
        """Let ``role_name`` run ``spotkit handle-events --queue-url`` on this queue (queue mode)."""
        from cdktn_aws.iam import AwsRolePolicy as IamRolePolicy

        return IamRolePolicy(self, id_, name="spotkit-interruption-consumer", role=role_name,
                             policy=json.dumps(self.handler_policy))

    @property
    def queue_url(self) -> str:
        return self.queue.url
