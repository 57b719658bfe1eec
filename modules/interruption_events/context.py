"""Where the construct is deployed (partition, region, account: data sources, read at plan time), and the
ARNs of this account the policies name."""

from __future__ import annotations

from dataclasses import dataclass

from constructs import Construct


@dataclass(frozen=True)
class AwsContext:
    partition: str
    region: str
    account: str

    def arn(self, service: str, resource: str, *, region: bool = True, account: bool = True) -> str:
        """``arn:<partition>:<service>:<region>:<account>:<resource>``; ``region``/``account`` False leave
        that field empty (IAM names no region, AWS-owned documents no account)."""
        return (f"arn:{self.partition}:{service}:{self.region if region else ''}:"
                f"{self.account if account else ''}:{resource}")


def aws_context(scope: Construct) -> AwsContext:
    """The ``account``, ``partition`` and ``region`` data sources, in ``scope``."""
    from cdktn_aws.meta_data_sources import DataAwsPartition, DataAwsRegion
    from cdktn_aws.sts import DataAwsCallerIdentity

    account = DataAwsCallerIdentity(scope, "account").account_id
    partition = DataAwsPartition(scope, "partition").partition
    return AwsContext(partition=partition, region=DataAwsRegion(scope, "region").name, account=account)
