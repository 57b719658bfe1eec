"""Delivery: the SQS queue every rule sends to, and its dead-letter queue. Encrypted (SSE-SQS, or the KMS
key given), a redrive policy to the DLQ (and a redrive-allow policy naming only this queue), and a queue
policy that lets only the construct's EventBridge rules send."""

from __future__ import annotations

import json
from typing import Optional, Sequence

from constructs import Construct

from spotkit.constructs.interruption_events.settings import InterruptionEventsSettings
from spotkit.constructs.addresses import keep_address

VISIBILITY_TIMEOUT_MULTIPLE = 6   # AWS: an SQS event source's queue visibility >= 6x the function timeout


class InterruptionDelivery(Construct):
    """``queue`` and ``dlq``; ``allow_senders(rule_arns)`` adds the queue policy once the rules exist."""

    def __init__(self, scope: Construct, id_: str, *, name: str, settings: InterruptionEventsSettings,
                 kms_key_arn: Optional[str]):
        from cdktn_aws.sqs import AwsQueue as SqsQueue, AwsQueueRedriveAllowPolicy as SqsQueueRedriveAllowPolicy

        super().__init__(scope, id_)
        s = settings
        encryption = _encryption(kms_key_arn)
        # Visibility 6x the function timeout (AWS's advice for an SQS event source): a batch the Lambda
        # service had to retry (throttled at the concurrency cap) must not become visible to a second
        # invocation while the first still handles it. A message the handler reports to retry comes back
        # sooner: lambda_entry shortens its visibility itself (RETRY_VISIBILITY_SECONDS).
        self.visibility_timeout = VISIBILITY_TIMEOUT_MULTIPLE * s.lambda_timeout_seconds
        self.dlq = keep_address(SqsQueue(self, "dlq", name=f"{name}-interruptions-dlq",
                                       message_retention_seconds=s.dlq_retention_seconds, **encryption), scope, "dlq")
        self.queue = keep_address(SqsQueue(
            self, "queue", name=f"{name}-interruptions",
            message_retention_seconds=s.message_retention_seconds,
            visibility_timeout_seconds=self.visibility_timeout,
            receive_wait_time_seconds=20,
            redrive_policy=json.dumps({"deadLetterTargetArn": self.dlq.arn, "maxReceiveCount": s.max_receive_count}),
            **encryption,
        ), scope, "queue")
        keep_address(SqsQueueRedriveAllowPolicy(
            self, "dlq-redrive-allow", queue_url=self.dlq.url, redrive_allow_policy=json.dumps(
                {"redrivePermission": "byQueue", "sourceQueueArns": [self.queue.arn]})), scope, "dlq-redrive-allow")

    def allow_senders(self, rule_arns: Sequence[str]) -> None:
        """The queue policy: these EventBridge rules may send, and no one else."""
        from cdktn_aws.sqs import AwsQueuePolicy as SqsQueuePolicy

        rule_arns = list(rule_arns)
        keep_address(SqsQueuePolicy(self, "queue-policy", queue_url=self.queue.url, policy=json.dumps({
            "Version": "2012-10-17",
            "Statement": [
                {"Sid": "EventBridgeRulesOnly", "Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"},
                 "Action": "sqs:SendMessage", "Resource": self.queue.arn,
                 "Condition": {"ArnEquals": {"aws:SourceArn": rule_arns}}},
                {"Sid": "NoOtherSenders", "Effect": "Deny", "Principal": "*", "Action": "sqs:SendMessage",
                 "Resource": self.queue.arn, "Condition": {"ArnNotEquals": {"aws:SourceArn": rule_arns}}},
            ],
        })), self.node.scope, "queue-policy")


def _encryption(kms_key_arn: Optional[str]) -> dict:
    if kms_key_arn:
        return {"kms_master_key_id": kms_key_arn, "kms_data_key_reuse_period_seconds": 300}
    return {"sqs_managed_sse_enabled": True}
