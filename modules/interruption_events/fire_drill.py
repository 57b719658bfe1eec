"""The fire drill: per group, an AWS FIS experiment template ``aws:ec2:send-spot-instance-interruptions``
targeting the group's spot instances by the ``spotkit:group`` tag, stopped by an alarm on the dead-letter
queue (the handler failing), with its own role (``spotkit interrupt`` starts it)."""

from __future__ import annotations

import json
from typing import Sequence

from constructs import Construct

from spotkit.constructs.interruption_events.context import AwsContext
from spotkit.constructs.interruption_events.settings import InterruptionEventsSettings
from spotkit.constructs.iam import assume_role_policy
from spotkit.constructs.addresses import keep_address
from spotkit.runtime.notice import TAG_GROUP as GROUP_TAG


class InterruptionFireDrill(Construct):
    """``stop_alarm``, ``role`` and ``templates`` (the experiment templates by group)."""

    def __init__(self, scope: Construct, id_: str, *, ctx: AwsContext, name: str, groups: Sequence[str],
                 settings: InterruptionEventsSettings, dlq_name: str):
        from cdktn_aws.cloudwatch import AwsMetricAlarm as CloudwatchMetricAlarm

        super().__init__(scope, id_)
        self.stop_alarm = keep_address(CloudwatchMetricAlarm(
            self, "handler-failing", alarm_name=f"{name}-interruption-handler-failing",
            alarm_description="Messages in the interruption dead-letter queue: the handler is failing. Stops FIS experiments.",
            namespace="AWS/SQS", metric_name="ApproximateNumberOfMessagesVisible",
            dimensions={"QueueName": dlq_name}, statistic="Maximum", period=60, evaluation_periods=1,
            threshold=1, comparison_operator="GreaterThanOrEqualToThreshold", treat_missing_data="notBreaching"),
            scope, "handler-failing")
        self._create_role(ctx, name, groups)
        self.templates = {group: self._template(name, group, settings) for group in groups}

    def _create_role(self, ctx: AwsContext, name: str, groups: Sequence[str]) -> None:
        """FIS's role: interrupt the groups' spot instances only."""
        from cdktn_aws.iam import AwsRole as IamRole, AwsRolePolicy as IamRolePolicy

        parent = self.node.scope
        self.role = keep_address(IamRole(self, "role", name_prefix=f"{name}-fis-"[:38], assume_role_policy=assume_role_policy("fis.amazonaws.com")), parent, "fis-role")
        keep_address(IamRolePolicy(self, "policy", name="spotkit-fis-spot-interruptions", role=self.role.id, policy=json.dumps({
            "Version": "2012-10-17",
            "Statement": [
                {"Sid": "InterruptOwnSpot", "Effect": "Allow", "Action": ["ec2:SendSpotInstanceInterruptions"],
                 "Resource": [ctx.arn("ec2", "instance/*")],
                 "Condition": {"StringEquals": {f"aws:ResourceTag/{GROUP_TAG}": list(groups)}}},
                {"Sid": "FindTargets", "Effect": "Allow", "Action": ["ec2:DescribeInstances"], "Resource": ["*"]},
                {"Sid": "StopCondition", "Effect": "Allow", "Action": ["cloudwatch:DescribeAlarms"], "Resource": ["*"]},
            ],
        })), parent, "fis-policy")

    def _template(self, name: str, group: str, s: InterruptionEventsSettings):
        from cdktn_aws.fis import AwsExperimentTemplate as FisExperimentTemplate

        return keep_address(FisExperimentTemplate(
            self, f"template-{group}",
            description=f"spotkit: interrupt {s.fis_selection_mode} spot instance(s) of {group} "
                        f"({s.fis_duration_before_interruption} notice)",
            role_arn=self.role.arn,
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
            tags={"Name": f"{name}-{group}-spot-interruption", GROUP_TAG: group},
        ), self.node.scope, f"fis-{group}")
