"""What the handler may do: its IAM policy document, least privilege. No ``*`` in any action; resources
are the queue, the table, the groups, the check-pointing document, instances tagged with the groups, the
stack's target groups (tagged with its name, or listed) and its ECS clusters; ``*`` only for read calls AWS
does not scope. The Lambda's role gets it (with its log stream), and so does a role given
``grant_consume`` in queue mode."""

from __future__ import annotations

from typing import Optional, Sequence

from spotkit.constructs.capacity_fallback import FallbackSettings
from spotkit.constructs.interruption_events.context import AwsContext
from spotkit.constructs.interruption_events.settings import InterruptionEventsSettings
from spotkit.runtime.notice import TAG_GROUP as GROUP_TAG, TAG_NAME, TAG_REPLACEMENT_REQUESTED

CHECKPOINT_DOCUMENT = "AWS-RunShellScript"


def handler_policy(ctx: AwsContext, *, name: str, groups: Sequence[str], settings: InterruptionEventsSettings,
                   fallback: Optional[FallbackSettings], queue_arns: Sequence[str], journal_arn: str,
                   kms_key_arn: Optional[str]) -> dict:
    """The policy document: what every handler needs, then what ``start_replacement_on_rebalance``,
    ``fallback`` and a KMS key add."""
    group_arns = [ctx.arn("autoscaling", f"autoScalingGroup:*:autoScalingGroupName/{g}") for g in groups]
    statements = [
        {"Sid": "Queue", "Effect": "Allow",
         "Action": ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes"],
         "Resource": list(queue_arns)},
        {"Sid": "Journal", "Effect": "Allow",
         "Action": ["dynamodb:UpdateItem", "dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:Query",
                    "dynamodb:BatchWriteItem"],
         "Resource": [journal_arn]},
        *_handling_statements(ctx, name, groups, settings, group_arns),
    ]
    if settings.start_replacement_on_rebalance:
        statements += _replacement_statements(ctx, groups, group_arns)
    if fallback is not None:
        statements += _fallback_statements(ctx, groups, group_arns)
    if kms_key_arn:
        statements.append({"Sid": "QueueKey", "Effect": "Allow", "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
                           "Resource": [kms_key_arn]})
    return {"Version": "2012-10-17", "Statement": statements}


def _handling_statements(ctx: AwsContext, name: str, groups: Sequence[str], settings: InterruptionEventsSettings,
                         group_arns: list[str]) -> list[dict]:
    """Reading, deregistering, draining, check-pointing and completing the lifecycle action."""
    return [
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
            "Resource": list(settings.target_group_arns)}] if settings.target_group_arns else []),
        {"Sid": "DeregisterOwnTargetGroups", "Effect": "Allow", "Action": ["elasticloadbalancing:DeregisterTargets"],
         "Resource": [ctx.arn("elasticloadbalancing", "targetgroup/*/*")],
         "Condition": {"StringEquals": {f"aws:ResourceTag/{TAG_NAME}": name}}},
        *_ecs_statements(ctx, groups, list(settings.ecs_clusters)),
        {"Sid": "CheckpointDocument", "Effect": "Allow", "Action": ["ssm:SendCommand"],
         "Resource": [ctx.arn("ssm", f"document/{CHECKPOINT_DOCUMENT}", account=False)]},
        {"Sid": "CheckpointOwnInstances", "Effect": "Allow", "Action": ["ssm:SendCommand"],
         "Resource": [ctx.arn("ec2", "instance/*")],
         "Condition": {"StringEquals": {f"aws:ResourceTag/{GROUP_TAG}": list(groups)}}},
        {"Sid": "CompleteLifecycle", "Effect": "Allow",
         "Action": ["autoscaling:CompleteLifecycleAction", "autoscaling:RecordLifecycleActionHeartbeat"],
         "Resource": group_arns},
    ]


def _ecs_statements(ctx: AwsContext, groups: Sequence[str], clusters: list[str]) -> list[dict]:
    """Draining: in the named clusters only. With no cluster named, the handler looks in every cluster
    (listing and describing are reads), and may set DRAINING only on container instances tagged with one
    of the groups (spotkit's ECS hosts propagate their EC2 tags to the container instance)."""
    if clusters:
        return [
            {"Sid": "EcsList", "Effect": "Allow", "Action": ["ecs:ListContainerInstances"],
             "Resource": [ctx.arn("ecs", f"cluster/{c}") for c in clusters]},
            {"Sid": "EcsDrain", "Effect": "Allow",
             "Action": ["ecs:DescribeContainerInstances", "ecs:UpdateContainerInstancesState"],
             "Resource": [ctx.arn("ecs", f"container-instance/{c}/*") for c in clusters]},
        ]
    return [
        {"Sid": "EcsList", "Effect": "Allow", "Action": ["ecs:ListContainerInstances"],
         "Resource": [ctx.arn("ecs", "cluster/*")]},
        {"Sid": "EcsDescribe", "Effect": "Allow", "Action": ["ecs:DescribeContainerInstances"],
         "Resource": [ctx.arn("ecs", "container-instance/*")]},
        {"Sid": "EcsDrainOwnGroups", "Effect": "Allow", "Action": ["ecs:UpdateContainerInstancesState"],
         "Resource": [ctx.arn("ecs", "container-instance/*")],
         "Condition": {"StringEquals": {f"aws:ResourceTag/{GROUP_TAG}": list(groups)}}},
    ]


def _replacement_statements(ctx: AwsContext, groups: Sequence[str], group_arns: list[str]) -> list[dict]:
    """``start_replacement_on_rebalance``: raise the group's desired capacity, and mark the instance."""
    return [
        {"Sid": "StartReplacement", "Effect": "Allow", "Action": ["autoscaling:SetDesiredCapacity"],
         "Resource": group_arns},
        {"Sid": "MarkReplaced", "Effect": "Allow", "Action": ["ec2:CreateTags"],
         "Resource": [ctx.arn("ec2", "instance/*")],
         "Condition": {"StringEquals": {f"aws:ResourceTag/{GROUP_TAG}": list(groups)},
                       "ForAllValues:StringEquals": {"aws:TagKeys": [TAG_REPLACEMENT_REQUESTED]}}},
    ]


def _fallback_statements(ctx: AwsContext, groups: Sequence[str], group_arns: list[str]) -> list[dict]:
    """``fallback``: read capacity, and change the groups' on-demand base and fallback tags."""
    return [
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
         "Resource": [ctx.arn("ec2", "*"), ctx.arn("ec2", "image/*", account=False)],
         "Condition": {"ArnLike": {"ec2:LaunchTemplate": ctx.arn("ec2", "launch-template/*")},
                       "Bool": {"ec2:IsLaunchTemplateResource": "true"}}},
        {"Sid": "FallbackTagAtLaunch", "Effect": "Allow", "Action": ["ec2:CreateTags"],
         "Resource": [ctx.arn("ec2", f"{kind}/*") for kind in ("instance", "volume", "network-interface",
                                                               "spot-instances-request")],
         "Condition": {"StringEquals": {"ec2:CreateAction": "RunInstances"}}},
        # Only the groups' own instance roles (SpotComputeGroup names them "<group>-..."), to EC2 only.
        {"Sid": "FallbackPassInstanceRole", "Effect": "Allow", "Action": ["iam:PassRole"],
         "Resource": [ctx.arn("iam", f"role/{(g + '-')[:38]}*", region=False) for g in groups],
         "Condition": {"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}}},
    ]
