"""moto gap: Auto Scaling ``CompleteLifecycleAction`` and ``RecordLifecycleActionHeartbeat``.

moto 5.2 stores lifecycle hooks (PutLifecycleHook / DescribeLifecycleHooks) but has no handler for
completing or heart-beating a lifecycle action: boto3 gets an error for an unknown action. This
extension adds both actions to moto's Auto Scaling responder, so the code under test talks to the moto
server over HTTP exactly as it talks to AWS (Query API, ``Action=CompleteLifecycleAction``).

What it checks, like AWS: the group exists, the hook exists on that group, the result is CONTINUE or
ABANDON, and an instance id or action token is given. What it cannot check: whether an action is really
pending (moto ignores hooks, so no instance ever waits in Terminating:Wait). Each call is recorded on the
region's Auto Scaling backend, so ``moto_server.reset()`` clears the record with the rest of the state.

Reuse: call ``install()`` (done by tests/support/moto_server.py at import) and read
``completed_lifecycle_actions()`` / ``lifecycle_heartbeats()``.
"""

from __future__ import annotations

from moto.autoscaling.exceptions import ValidationError
from moto.autoscaling.models import autoscaling_backends
from moto.autoscaling.responses import AutoScalingResponse
from moto.core import DEFAULT_ACCOUNT_ID
from moto.core.responses import EmptyResult

_RECORD_ATTR = "spotkit_lifecycle_calls"


def _record(backend, call: dict) -> None:
    if not hasattr(backend, _RECORD_ATTR):
        setattr(backend, _RECORD_ATTR, [])
    getattr(backend, _RECORD_ATTR).append(call)


def _check_hook(self: AutoScalingResponse) -> tuple[str, str, str | None, str | None]:
    group = self._get_param("AutoScalingGroupName")
    hook = self._get_param("LifecycleHookName")
    instance_id = self._get_param("InstanceId")
    token = self._get_param("LifecycleActionToken")
    backend = self.autoscaling_backend
    if group not in backend.autoscaling_groups:
        raise ValidationError(f"Group {group} not found")
    if not backend.describe_lifecycle_hooks(as_name=group, lifecycle_hook_names=[hook]):
        raise ValidationError(f"No Lifecycle Hook found with name {hook} for group {group}")
    if not instance_id and not token:
        raise ValidationError("Either an InstanceId or a LifecycleActionToken must be given")
    return group, hook, instance_id, token


def complete_lifecycle_action(self: AutoScalingResponse):
    group, hook, instance_id, token = _check_hook(self)
    result = self._get_param("LifecycleActionResult")
    if result not in ("CONTINUE", "ABANDON"):
        raise ValidationError(f"LifecycleActionResult must be CONTINUE or ABANDON (got {result})")
    _record(self.autoscaling_backend, {"action": "CompleteLifecycleAction", "group": group, "hook": hook,
                                        "instance_id": instance_id, "token": token, "result": result})
    return EmptyResult()


def record_lifecycle_action_heartbeat(self: AutoScalingResponse):
    group, hook, instance_id, token = _check_hook(self)
    _record(self.autoscaling_backend, {"action": "RecordLifecycleActionHeartbeat", "group": group, "hook": hook,
                                        "instance_id": instance_id, "token": token})
    return EmptyResult()


def install() -> None:
    """Add the two actions to moto's Auto Scaling responder (idempotent; moto dispatches by method name)."""
    AutoScalingResponse.complete_lifecycle_action = complete_lifecycle_action
    AutoScalingResponse.record_lifecycle_action_heartbeat = record_lifecycle_action_heartbeat


def _calls(region: str, account: str) -> list[dict]:
    return list(getattr(autoscaling_backends[account][region], _RECORD_ATTR, []))


def completed_lifecycle_actions(region: str = "us-east-1", account: str = DEFAULT_ACCOUNT_ID) -> list[dict]:
    """CompleteLifecycleAction calls the moto server received since the last reset, oldest first."""
    return [c for c in _calls(region, account) if c["action"] == "CompleteLifecycleAction"]


def lifecycle_heartbeats(region: str = "us-east-1", account: str = DEFAULT_ACCOUNT_ID) -> list[dict]:
    """RecordLifecycleActionHeartbeat calls the moto server received since the last reset, oldest first."""
    return [c for c in _calls(region, account) if c["action"] == "RecordLifecycleActionHeartbeat"]
