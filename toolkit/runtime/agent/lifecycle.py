"""Completing the Auto Scaling termination lifecycle action from the instance itself.

The group's instance role may complete and heart-beat lifecycle actions of its own group only
(modules/compute_group.py, statement ``DrainOwnGroup``). The group name comes from ``--group`` or the
instance tag ``aws:autoscaling:groupName`` (IMDS instance tags are on in spotkit launch templates).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from spotkit.runtime.notice import DRAIN_HOOK_NAME  # noqa: F401 (re-exported: the hook the agent completes)

GROUP_TAG_PATH = "/latest/meta-data/tags/instance/aws:autoscaling:groupName"
INSTANCE_ID_PATH = "/latest/meta-data/instance-id"
REGION_PATH = "/latest/meta-data/placement/region"


@dataclass(frozen=True)
class LifecycleCompletion:
    group: Optional[str]
    instance_id: Optional[str]
    hook: str
    result: str
    completed_at: Optional[float]
    error: Optional[str] = None
    dry_run: bool = False


def complete_lifecycle_action(autoscaling, *, group: str, instance_id: str, hook: str = DRAIN_HOOK_NAME,
                              result: str = "CONTINUE", dry_run: bool = False, clock=None) -> LifecycleCompletion:
    """Call ``CompleteLifecycleAction``; AWS errors come back in the result (the agent logs them and goes on)."""
    import time

    clock = clock or time.time
    if dry_run:
        return LifecycleCompletion(group, instance_id, hook, result, None, dry_run=True)
    try:
        autoscaling.complete_lifecycle_action(LifecycleHookName=hook, AutoScalingGroupName=group,
                                              LifecycleActionResult=result, InstanceId=instance_id)
    except Exception as exc:  # botocore ClientError, EndpointConnectionError, NoCredentialsError...
        return LifecycleCompletion(group, instance_id, hook, result, None,
                                   error=f"completing the lifecycle action of {instance_id} in {group}: "
                                         f"{type(exc).__name__}: {exc}")
    return LifecycleCompletion(group, instance_id, hook, result, clock())


class AwsCliAutoScaling:
    """The one Auto Scaling call the agent makes, through the AWS CLI (``aws autoscaling
    complete-lifecycle-action``): Amazon Linux 2023 and the ECS/EKS-optimized AMIs carry the CLI, while
    boto3 is not importable by ``python3 -I -S``. Errors raise ``RuntimeError`` with the CLI's message."""

    def __init__(self, aws: str, *, region: Optional[str] = None, endpoint_url: Optional[str] = None,
                 timeout: float = 60.0):
        self.aws, self.region, self.endpoint_url, self.timeout = aws, region, endpoint_url, timeout

    def complete_lifecycle_action(self, *, LifecycleHookName: str, AutoScalingGroupName: str,  # noqa: N803
                                  LifecycleActionResult: str, InstanceId: str) -> dict:
        import subprocess

        argv = [self.aws, "autoscaling", "complete-lifecycle-action", "--lifecycle-hook-name", LifecycleHookName,
                "--auto-scaling-group-name", AutoScalingGroupName, "--lifecycle-action-result",
                LifecycleActionResult, "--instance-id", InstanceId, "--output", "json"]
        if self.region:
            argv += ["--region", self.region]
        if self.endpoint_url:
            argv += ["--endpoint-url", self.endpoint_url]
        try:
            done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                  timeout=self.timeout)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise RuntimeError(f"aws autoscaling complete-lifecycle-action: {exc}") from None
        if done.returncode != 0:
            raise RuntimeError(f"aws autoscaling complete-lifecycle-action exited {done.returncode}: "
                               f"{(done.stderr or done.stdout).strip()[-500:]}")
        return {}


def autoscaling_client(*, region: Optional[str], endpoint_url: Optional[str] = None,
                       profile: Optional[str] = None, aws_cli: Optional[str] = None):
    """boto3's Auto Scaling client when boto3 is importable, else the AWS CLI when it is on PATH (or
    ``aws_cli``), else None: the agent then logs that the interruption handler completes the action."""
    try:
        import boto3  # noqa: F401 - optional on an instance
    except ImportError:
        import shutil

        aws = aws_cli or shutil.which("aws")
        return AwsCliAutoScaling(aws, region=region, endpoint_url=endpoint_url) if aws else None
    session = boto3.Session(profile_name=profile, region_name=region)
    return session.client("autoscaling", endpoint_url=endpoint_url)
