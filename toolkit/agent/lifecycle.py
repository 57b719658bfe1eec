"""Completing the Auto Scaling termination lifecycle action from the instance itself.

The group's instance role may complete and heart-beat lifecycle actions of its own group only
(modules/compute_group.py, statement ``DrainOwnGroup``). The group name comes from ``--group`` or the
instance tag ``aws:autoscaling:groupName`` (IMDS instance tags are on in spotkit launch templates).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

DRAIN_HOOK_NAME = "spotkit-drain"  # same as modules.compute_group.DRAIN_HOOK_NAME (no cdktn import here)
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
