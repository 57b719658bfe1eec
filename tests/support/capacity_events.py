"""The capacity events AWS sends (and the scheduled check EventBridge sends), and a spot group short of
capacity in the moto server: the world of tests/test_capacity_fallback.py and the interrupt drill."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

from tests.support.interruption_world import ACCOUNT, envelope

SPOT_FAILURE = ("Could not launch Spot Instances. InsufficientInstanceCapacity - There is no Spot capacity "
                "available that matches your request. Launching EC2 instance failed.")
NOT_ENOUGH = ("We currently do not have sufficient g6.xlarge capacity in the Availability Zone you requested "
              "(us-east-1a). Launching EC2 instance failed.")
OTHER_FAILURES = {
    "iam": "You are not authorized to perform this operation. Launching EC2 instance failed.",
    "image": "The image id '[ami-0abc]' does not exist. InvalidAMIID.NotFound. Launching EC2 instance failed.",
    "quota": "VcpuLimitExceeded - You have requested more vCPU capacity than your current vCPU limit allows.",
    "subnet": "The subnet ID 'subnet-0abc' does not exist (InvalidSubnetID.NotFound). Launching EC2 instance failed.",
}


def launch_unsuccessful(group: str, message: str = SPOT_FAILURE, activity_id: str | None = None) -> dict:
    """``EC2 Instance Launch Unsuccessful`` as Auto Scaling sends it to EventBridge."""
    return envelope("EC2 Instance Launch Unsuccessful", "aws.autoscaling", {
        "StatusCode": "Failed", "AutoScalingGroupName": group, "ActivityId": activity_id or str(uuid.uuid4()),
        "Details": {"Availability Zone": "us-east-1a", "Subnet ID": "subnet-0abc"},
        "RequestId": str(uuid.uuid4()), "EndTime": datetime.now(timezone.utc).isoformat(), "EC2InstanceId": "",
        "StartTime": datetime.now(timezone.utc).isoformat(),
        "Cause": "At 2026-11-29T03:00:00Z an instance was started in response to a difference between desired and "
                 "actual capacity, increasing the capacity from 1 to 3.",
        "StatusMessage": message,
        "Description": "Launching a new EC2 instance.  Status Reason: " + message},
        resources=[f"arn:aws:autoscaling:us-east-1:{ACCOUNT}:autoScalingGroup:x:autoScalingGroupName/{group}"])


def placement_failure(cluster_arn: str, reason: str = "RESOURCE:GPU") -> dict:
    """``ECS Service Action`` SERVICE_TASK_PLACEMENT_FAILURE."""
    return envelope("ECS Service Action", "aws.ecs", {
        "eventType": "WARN", "eventName": "SERVICE_TASK_PLACEMENT_FAILURE", "clusterArn": cluster_arn,
        "reason": reason, "createdAt": datetime.now(timezone.utc).isoformat()},
        resources=[f"{cluster_arn.replace(':cluster/', ':service/')}/inference"])


def scheduled_check(rule: str = "spotkit-gpu-fallback-check", time: str | None = None) -> dict:
    """What a scheduled EventBridge rule delivers (``Scheduled Event`` from ``aws.events``)."""
    ev = envelope("Scheduled Event", "aws.events", {},
                  resources=[f"arn:aws:events:us-east-1:{ACCOUNT}:rule/{rule}"])
    if time:
        ev["time"] = time
    return ev


def make_short(world, lost: int = 2) -> None:
    """The group loses ``lost`` instances and AWS cannot launch their replacements (desired stays): moto
    would launch at once, so the desired capacity is put back on moto's model (as the replace tests do)."""
    from moto.autoscaling.models import autoscaling_backends
    from moto.core import DEFAULT_ACCOUNT_ID

    desired = len(world.instance_ids())
    for iid in world.instance_ids()[:lost]:
        world.asg.terminate_instance_in_auto_scaling_group(InstanceId=iid, ShouldDecrementDesiredCapacity=True)
    autoscaling_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].autoscaling_groups[world.group].desired_capacity = desired
