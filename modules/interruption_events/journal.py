"""The journal: a DynamoDB table (``pk``/``sk``, TTL ``expires_at``) that de-duplicates events and records
what the handler did (``spotkit.runtime.interruption.store``)."""

from __future__ import annotations

from typing import Optional

from constructs import Construct

from spotkit.constructs.addresses import keep_address


class InterruptionJournal(Construct):
    """``table``: the journal, encrypted (with ``kms_key_arn`` when given), point-in-time recovery on."""

    def __init__(self, scope: Construct, id_: str, *, name: str, kms_key_arn: Optional[str]):
        from cdktn_aws.dynamodb import AwsTable as DynamodbTable

        super().__init__(scope, id_)
        self.table = keep_address(DynamodbTable(
            self, "table",
            name=f"{name}-interruption-journal",
            billing_mode="PAY_PER_REQUEST",
            hash_key="pk", range_key="sk",
            attribute=[DynamodbTable.AttributeProperty(name="pk", type="S"), DynamodbTable.AttributeProperty(name="sk", type="S")],
            ttl=DynamodbTable.TtlProperty(attribute_name="expires_at", enabled=True),
            point_in_time_recovery=DynamodbTable.PointInTimeRecoveryProperty(enabled=True),
            server_side_encryption=DynamodbTable.ServerSideEncryptionProperty(
                enabled=True, **({"kms_key_arn": kms_key_arn} if kms_key_arn else {})),
        ), scope, "journal")
