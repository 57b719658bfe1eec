"""The handler: a Lambda consuming the queue through an event source mapping that reports batch item
failures (one delivery path with retries and a DLQ, instead of a second, asynchronous EventBridge->Lambda
path), with its role, policy and log group. In queue mode there is no Lambda: ``grant_consume(role)`` gives
a host's role what ``spotkit handle-events --queue-url`` needs."""

from __future__ import annotations

import json
from typing import Optional, Sequence

from constructs import Construct

from spotkit.constructs.capacity_fallback import FallbackSettings
from spotkit.constructs.interruption_events.settings import InterruptionEventsSettings
from spotkit.constructs.iam import assume_role_policy
from spotkit.constructs.addresses import keep_address

LAMBDA_HANDLER = "spotkit.runtime.interruption.lambda_entry.handler"
LAMBDA_RUNTIME = "python3.12"
DEFAULT_MAXIMUM_CONCURRENCY = 10  # the event source mapping's cap when nothing is reserved


def handler_environment(*, journal_name: str, groups: Sequence[str], settings: InterruptionEventsSettings,
                        fallback: Optional[FallbackSettings]) -> dict[str, str]:
    """The Lambda's configuration (read by ``spotkit.runtime.interruption.lambda_entry``)."""
    s = settings
    return {
        "SPOTKIT_JOURNAL_TABLE": journal_name,
        "SPOTKIT_DRY_RUN": str(s.dry_run).lower(),
        "SPOTKIT_GROUPS": ",".join(groups),
        "SPOTKIT_CHECKPOINT_COMMAND": s.checkpoint_command,
        "SPOTKIT_CHECKPOINT_ON_REBALANCE": str(s.checkpoint_on_rebalance).lower(),
        "SPOTKIT_DRAIN_ON_REBALANCE": str(s.drain_on_rebalance).lower(),
        "SPOTKIT_START_REPLACEMENT": str(s.start_replacement_on_rebalance).lower(),
        "SPOTKIT_CLUSTERS": ",".join(s.ecs_clusters),
        "SPOTKIT_LIFECYCLE_RESULT": s.lifecycle_result,
        **(fallback or FallbackSettings(enabled=False)).environment(),
    }


class InterruptionHandler(Construct):
    """``policy``: the handler's IAM policy document (``policy.handler_policy``). With ``code`` (the
    package asset; lambda mode): ``role``, ``lambda_policy`` (``policy`` and its log stream), ``function``
    and ``event_source``, which consumes ``queue_arn``. Without (queue mode): ``function`` is None."""

    def __init__(self, scope: Construct, id_: str, *, name: str, groups: Sequence[str],
                 settings: InterruptionEventsSettings, policy: dict, environment: dict[str, str], queue_arn: str,
                 code=None):
        super().__init__(scope, id_)
        self.policy = policy
        self.function = None
        if code is not None:
            role_policy = self._create_role(name, settings)
            self._create_function(name, groups, settings, environment, queue_arn, code, role_policy)

    def _create_role(self, name: str, s: InterruptionEventsSettings):
        """The function's role and log group, and the role's policy (returned: the function waits for it)."""
        from cdktn_aws.cloudwatch_logs import AwsGroup as CloudwatchLogGroup
        from cdktn_aws.iam import AwsRole as IamRole, AwsRolePolicy as IamRolePolicy

        parent = self.node.scope
        self.role = keep_address(IamRole(self, "role", name_prefix=f"{name}-ih-"[:38], assume_role_policy=assume_role_policy("lambda.amazonaws.com")), parent, "handler-role")
        self.log_group = keep_address(CloudwatchLogGroup(self, "logs", name=f"/aws/lambda/{function_name(name)}",
                                                       retention_in_days=s.log_retention_days), parent, "handler-logs")
        policy = json.loads(json.dumps(self.policy))
        policy["Statement"].insert(0, {"Sid": "Logs", "Effect": "Allow",
                                       "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                                       "Resource": [f"{self.log_group.arn}:*"]})
        self.lambda_policy = policy
        return keep_address(IamRolePolicy(self, "policy", name="spotkit-interruption-handler", role=self.role.id,
                                        policy=json.dumps(policy)), parent, "handler-policy")

    def _create_function(self, name: str, groups: Sequence[str], s: InterruptionEventsSettings,
                         environment: dict[str, str], queue_arn: str, code, role_policy) -> None:
        from cdktn_aws.lambda_ import AwsEventSourceMapping as LambdaEventSourceMapping, AwsFunction as LambdaFunction

        parent = self.node.scope
        self.function = keep_address(LambdaFunction(
            self, "function", function_name=function_name(name), role=self.role.arn,
            description=f"spotkit interruption handler for {', '.join(groups)}",
            runtime=LAMBDA_RUNTIME, handler=LAMBDA_HANDLER,
            filename=code.path, source_code_hash=code.asset_hash,
            # Timeout: the lifecycle hook's heartbeat (300 s) a terminating batch may wait for, plus margin.
            timeout=s.lambda_timeout_seconds, memory_size=s.lambda_memory_mib,
            # Reserved concurrency: a wave must find handlers free even when other functions of the account
            # use the pool, and must not run so many at once that ELB, ECS and SSM throttle every one of them.
            reserved_concurrent_executions=s.lambda_reserved_concurrency,
            environment=LambdaFunction.EnvironmentProperty(variables=environment),
            depends_on=[self.log_group, role_policy],
        ), parent, "handler")
        self.event_source = keep_address(LambdaEventSourceMapping(
            self, "source", event_source_arn=queue_arn, function_name=self.function.arn,
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
        ), parent, "handler-source")

    def grant_consume(self, role_name: str, id_: str = "consumer-policy"):
        """Let ``role_name`` run ``spotkit handle-events --queue-url`` on the queue (queue mode)."""
        from cdktn_aws.iam import AwsRolePolicy as IamRolePolicy

        return keep_address(IamRolePolicy(self, id_, name="spotkit-interruption-consumer", role=role_name,
                                        policy=json.dumps(self.policy)), self.node.scope, id_)


def function_name(name: str) -> str:
    return f"{name}-interruption-handler"[:64]
