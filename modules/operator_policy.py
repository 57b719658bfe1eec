"""The operator policy: what a person (or CI job) running spotkit's runbooks against a stack needs, as a
synthesized, reviewable IAM policy (``aws_iam_policy`` "<name>-spotkit-operator", ARN in the stack output
``operator_policy_arn``). Attach it to the role or group that runs ``spotkit status``, ``spotkit recover
drain | volumes | replace | restore-spot | snapshot``.

Proven offline (docs/iam.md): every call these runbooks make in the emulator-backed tests is evaluated
against this document by @cloud-copilot/iam-simulate (tests/test_iam_operator.py).

Scope: reads AWS cannot scope are ``*``; every write is confined to the stack's groups (by name for the
Auto Scaling group, by the ``spotkit:group`` tag for instances, volumes and snapshots, by the stack's
``spotkit:name`` tag for target groups). Volumes and snapshots are created only carrying the group's tag,
and tagged only as part of their creation.
"""

from __future__ import annotations

import json
from typing import Sequence

from constructs import Construct

from spotkit.runtime.notice import TAG_GROUP, TAG_NAME

# Read calls AWS authorizes only on "*" (the runbooks filter server-side by tag).
UNSCOPED_READS = (
    "ec2:DescribeInstances", "ec2:DescribeVolumes", "ec2:DescribeSnapshots", "ec2:DescribeInstanceTypes",
    "autoscaling:DescribeAutoScalingGroups", "autoscaling:DescribeScalingActivities", "autoscaling:DescribeTags",
    "autoscaling:DescribeLifecycleHooks", "elasticloadbalancing:DescribeTargetGroups",
    "elasticloadbalancing:DescribeTargetHealth", "ecs:ListClusters",
)


def operator_statements(*, groups: Sequence[str], name: str, partition: str, region: str, account: str) -> list[dict]:
    """The policy's statements for ``groups`` of the stack ``name`` (values or Terraform references).

    Long: one IAM policy, read and audited as a whole; its statements in one list, each commented with the
    command or runbook that needs it, so a reviewer sees every grant and its scope in one place.
    """

    def arn(service: str, resource: str, *, acct: str = account) -> str:
        return f"arn:{partition}:{service}:{region}:{acct}:{resource}"

    group_arns = [arn("autoscaling", f"autoScalingGroup:*:autoScalingGroupName/{g}") for g in groups]
    own = {"StringEquals": {f"aws:ResourceTag/{TAG_GROUP}": list(groups)}}
    return [
        {"Sid": "ReadUnscoped", "Effect": "Allow", "Action": list(UNSCOPED_READS), "Resource": "*"},
        # recover replace / restore-spot: the on-demand base and its fallback tags; drain: the hook; and the
        # runbooks' per-group lock, a lease kept in a tag of the group (toolkit/runbooks/lock.py).
        {"Sid": "OwnGroups", "Effect": "Allow",
         "Action": ["autoscaling:UpdateAutoScalingGroup", "autoscaling:CreateOrUpdateTags", "autoscaling:DeleteTags",
                    "autoscaling:CompleteLifecycleAction", "autoscaling:RecordLifecycleActionHeartbeat"],
         "Resource": group_arns},
        # UpdateAutoScalingGroup with the mixed instances policy (replace, restore-spot) names the group's
        # launch template, and AWS checks the caller may use it: RunInstances only through a launch template
        # of this account, tags only at launch, and the groups' instance roles passed to EC2 only.
        {"Sid": "UseOwnLaunchTemplates", "Effect": "Allow", "Action": ["ec2:RunInstances"],
         "Resource": [arn("ec2", "*"), arn("ec2", "image/*", acct="")],
         "Condition": {"ArnLike": {"ec2:LaunchTemplate": arn("ec2", "launch-template/*")},
                       "Bool": {"ec2:IsLaunchTemplateResource": "true"}}},
        {"Sid": "TagAtLaunch", "Effect": "Allow", "Action": ["ec2:CreateTags"],
         "Resource": [arn("ec2", f"{kind}/*") for kind in ("instance", "volume", "network-interface",
                                                            "spot-instances-request")],
         "Condition": {"StringEquals": {"ec2:CreateAction": "RunInstances"}}},
        {"Sid": "PassOwnInstanceRoles", "Effect": "Allow", "Action": ["iam:PassRole"],
         "Resource": [f"arn:{partition}:iam::{account}:role/{(g + '-')[:38]}*" for g in groups],
         "Condition": {"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}}},
        # recover volumes / snapshot: attach the group's volumes to the group's instances only.
        {"Sid": "AttachOwnVolumes", "Effect": "Allow", "Action": ["ec2:AttachVolume"],
         "Resource": [arn("ec2", "volume/*"), arn("ec2", "instance/*")], "Condition": own},
        # A volume restored from the group's snapshot, or moved across AZs through a snapshot, carries the group tag.
        {"Sid": "SnapshotOwnVolumes", "Effect": "Allow", "Action": ["ec2:CreateSnapshot"],
         "Resource": [arn("ec2", "volume/*")], "Condition": own},
        {"Sid": "CreateTaggedSnapshots", "Effect": "Allow", "Action": ["ec2:CreateSnapshot"],
         "Resource": [arn("ec2", "snapshot/*", acct="")],
         "Condition": {"StringEquals": {f"aws:RequestTag/{TAG_GROUP}": list(groups)}}},
        {"Sid": "VolumesFromOwnSnapshots", "Effect": "Allow", "Action": ["ec2:CreateVolume"],
         "Resource": [arn("ec2", "snapshot/*", acct="")], "Condition": own},
        {"Sid": "CreateTaggedVolumes", "Effect": "Allow", "Action": ["ec2:CreateVolume"],
         "Resource": [arn("ec2", "volume/*")],
         "Condition": {"StringEquals": {f"aws:RequestTag/{TAG_GROUP}": list(groups)}}},
        {"Sid": "TagOnlyAtCreation", "Effect": "Allow", "Action": ["ec2:CreateTags"],
         "Resource": [arn("ec2", "volume/*"), arn("ec2", "snapshot/*", acct="")],
         "Condition": {"StringEquals": {"ec2:CreateAction": ["CreateVolume", "CreateSnapshot"]}}},
        # recover drain: the stack's target groups, the groups' ECS container instances.
        {"Sid": "DeregisterFromOwnTargetGroups", "Effect": "Allow", "Action": ["elasticloadbalancing:DeregisterTargets"],
         "Resource": [arn("elasticloadbalancing", "targetgroup/*/*")],
         "Condition": {"StringEquals": {f"aws:ResourceTag/{TAG_NAME}": name}}},
        {"Sid": "FindContainerInstances", "Effect": "Allow",
         "Action": ["ecs:ListContainerInstances", "ecs:DescribeContainerInstances"],
         "Resource": [arn("ecs", "cluster/*"), arn("ecs", "container-instance/*")]},
        {"Sid": "DrainOwnContainerInstances", "Effect": "Allow", "Action": ["ecs:UpdateContainerInstancesState"],
         "Resource": [arn("ecs", "container-instance/*")], "Condition": own},
        # spotkit status / interrupt: what the interruption handler journaled.
        {"Sid": "ReadJournal", "Effect": "Allow", "Action": ["dynamodb:GetItem", "dynamodb:Query", "dynamodb:Scan"],
         "Resource": [arn("dynamodb", f"table/{name}-interruption-journal")]},
        # spotkit interrupt --target aws: a one-off copy of the group's FIS template aimed at the chosen
        # instances, started, followed and deleted; only templates tagged with the groups, only the stack's
        # FIS role passed to FIS.
        {"Sid": "FisList", "Effect": "Allow", "Action": ["fis:ListExperimentTemplates"], "Resource": "*"},
        {"Sid": "FisOwnTemplates", "Effect": "Allow",
         "Action": ["fis:GetExperimentTemplate", "fis:StartExperiment", "fis:DeleteExperimentTemplate"],
         "Resource": [arn("fis", "experiment-template/*")], "Condition": own},
        {"Sid": "FisCopyTemplate", "Effect": "Allow", "Action": ["fis:CreateExperimentTemplate"],
         "Resource": [arn("fis", "experiment-template/*")],
         "Condition": {"StringEquals": {f"aws:RequestTag/{TAG_GROUP}": list(groups)}}},
        {"Sid": "FisSpotAction", "Effect": "Allow", "Action": ["fis:CreateExperimentTemplate"],
         "Resource": [arn("fis", "action/aws:ec2:send-spot-instance-interruptions")]},
        {"Sid": "FisExperiments", "Effect": "Allow", "Action": ["fis:StartExperiment", "fis:GetExperiment"],
         "Resource": [arn("fis", "experiment/*")]},
        {"Sid": "FisPassStackRole", "Effect": "Allow", "Action": ["iam:PassRole"],
         "Resource": [f"arn:{partition}:iam::{account}:role/{fis_role_prefix(name)}*"],
         "Condition": {"StringEquals": {"iam:PassedToService": "fis.amazonaws.com"}}},
    ]


def fis_role_prefix(name: str) -> str:
    """The name prefix of the stack's FIS role (modules/interruption_events/fire_drill.py names it so)."""
    return f"{name}-fis-"[:38]


class OperatorPolicy(Construct):
    """``aws_iam_policy`` "<name>-spotkit-operator" for the runbooks on ``groups``; output ``operator_policy_arn``."""

    def __init__(self, scope: Construct, id_: str, *, name: str, groups: Sequence[str]):
        super().__init__(scope, id_)
        from cdktn import TerraformOutput
        from cdktn_aws.iam import AwsPolicy as IamPolicy
        from cdktn_aws.meta_data_sources import DataAwsPartition, DataAwsRegion
        from cdktn_aws.sts import DataAwsCallerIdentity

        self.document = {"Version": "2012-10-17", "Statement": operator_statements(
            groups=groups, name=name, partition=DataAwsPartition(self, "partition").partition,
            region=DataAwsRegion(self, "region").name, account=DataAwsCallerIdentity(self, "account").account_id)}
        self.policy = IamPolicy(self, "policy", name=f"{name}-spotkit-operator"[:128],
                                description=f"spotkit runbooks on {', '.join(groups)} (docs/iam.md)",
                                policy=json.dumps(self.document))
        TerraformOutput(self, "operator_policy_arn", value=self.policy.arn)
