"""Auto Scaling: a group keeps its mixed-instances policy; lifecycle actions complete; activities are described.

- ``UpdateAutoScalingGroup``: moto 5.2 sets the group's ``MixedInstancesPolicy`` to None on every update
  that leaves it out.
- ``CompleteLifecycleAction`` / ``RecordLifecycleActionHeartbeat``: moto 5.2 stores lifecycle hooks
  (PutLifecycleHook / DescribeLifecycleHooks) but has no handler for completing or heart-beating an action;
  boto3 gets an error for an unknown action. What is checked, like AWS: the group exists, the hook exists on
  that group, the result is CONTINUE or ABANDON, and an instance id or action token is given. What cannot be
  checked: whether an action is really pending (moto ignores hooks, so no instance ever waits in
  Terminating:Wait). Each call is recorded on the region's Auto Scaling backend (so a reset clears it), for
  the control path to read (``control.completed_lifecycle_actions``).
- Launches of a group with a ``MixedInstancesPolicy``: moto 5.2 sizes the group by the policy's on-demand
  and spot counts but launches every instance on-demand. The emulator launches on-demand until the
  group's live on-demand instances reach ``OnDemandBaseCapacity`` plus the on-demand percentage of the
  rest (moto's own arithmetic), and spot after that (``InstanceLifecycle`` spot), as Auto Scaling does;
  the capacity fallback counts the on-demand instances its raised base has brought up.
- ``DescribeScalingActivities``: moto 5.2 records no activities and always answers an empty list. The
  emulator answers from the region's list of activities (empty unless the control path recorded one with
  ``control.inject_scaling_activity``, e.g. a spot launch that failed for lack of capacity, which moto never
  fails), newest first, paged by ``MaxRecords`` / ``NextToken`` like AWS.
"""

from __future__ import annotations

import copy

from spotkit.rehearsal.local.patches import Patch, kept_on, sets, wrap_once

_CALLS_ATTR = "spotkit_lifecycle_calls"
_ACTIVITIES_ATTR = "spotkit_scaling_activities"


def _keep_mixed_instances_policy() -> None:
    from moto.autoscaling.models import FakeAutoScalingGroup

    wrap_once(FakeAutoScalingGroup, "update", _keeping_policy)


def _keeping_policy(original):
    def update(self, *args, **kwargs):
        keep = self.mixed_instances_policy
        if kwargs.get("mixed_instances_policy") is None and keep is not None and not kwargs.get("launch_template") \
                and not kwargs.get("launch_config_name"):
            # moto stored the spec with both the id and the name, which its own validation refuses.
            kept = copy.deepcopy(keep)
            spec = (kept.get("LaunchTemplate") or {}).get("LaunchTemplateSpecification") or {}
            if spec.get("LaunchTemplateId"):
                spec.pop("LaunchTemplateName", None)
            kwargs["mixed_instances_policy"] = kept
        return original(self, *args, **kwargs)

    return update


def _launch_by_market() -> None:
    from moto.autoscaling.models import FakeAutoScalingGroup

    wrap_once(FakeAutoScalingGroup, "replace_autoscaling_group_instances", _marking_spot)


def on_demand_wanted(group) -> int:
    """The on-demand instances a mixed instances policy asks for at the group's desired capacity: the base,
    then the on-demand percentage of the capacity above it (truncated, as moto sizes the group)."""
    dist = (group.mixed_instances_policy or {}).get("InstancesDistribution") or {}
    base = int(dist.get("OnDemandBaseCapacity", 0) or 0)
    percent = int(dist.get("OnDemandPercentageAboveBaseCapacity", 100) if dist else 100)
    desired = int(group.desired_capacity or 0)
    return min(desired, base) + int(max(0, desired - base) * percent / 100)


def _marking_spot(original):
    def replace_autoscaling_group_instances(self, count_needed, propagated_tags):
        before = {state.instance.id for state in self.instance_states}
        original(self, count_needed, propagated_tags)
        if not self.mixed_instances_policy:
            return
        live = [st.instance for st in self.instance_states if st.instance.id in before
                and st.instance.state in ("pending", "running")]
        on_demand = sum(1 for i in live if getattr(i, "instance_lifecycle", None) != "spot")
        wanted = on_demand_wanted(self)
        for state in self.instance_states:
            if state.instance.id in before:
                continue
            if on_demand < wanted:
                on_demand += 1
            else:
                state.instance.instance_lifecycle = "spot"

    return replace_autoscaling_group_instances


def lifecycle_calls(backend) -> list[dict]:
    """The CompleteLifecycleAction / RecordLifecycleActionHeartbeat calls this backend answered, oldest first."""
    return kept_on(backend, _CALLS_ATTR, list)


def scaling_activities(backend) -> list[dict]:
    """The activities DescribeScalingActivities answers from (the control path records them)."""
    return kept_on(backend, _ACTIVITIES_ATTR, list)


def _check_hook(self) -> tuple[str, str, str | None, str | None]:
    from moto.autoscaling.exceptions import ValidationError

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


def complete_lifecycle_action(self):
    from moto.autoscaling.exceptions import ValidationError
    from moto.core.responses import EmptyResult

    group, hook, instance_id, token = _check_hook(self)
    result = self._get_param("LifecycleActionResult")
    if result not in ("CONTINUE", "ABANDON"):
        raise ValidationError(f"LifecycleActionResult must be CONTINUE or ABANDON (got {result})")
    lifecycle_calls(self.autoscaling_backend).append({
        "action": "CompleteLifecycleAction", "group": group, "hook": hook, "instance_id": instance_id,
        "token": token, "result": result})
    return EmptyResult()


def record_lifecycle_action_heartbeat(self):
    from moto.core.responses import EmptyResult

    group, hook, instance_id, token = _check_hook(self)
    lifecycle_calls(self.autoscaling_backend).append({
        "action": "RecordLifecycleActionHeartbeat", "group": group, "hook": hook, "instance_id": instance_id,
        "token": token})
    return EmptyResult()


def describe_scaling_activities(self):
    from moto.core.responses import ActionResult

    group = self._get_param("AutoScalingGroupName")
    max_records = int(self._get_param("MaxRecords") or 100)
    start = int(self._get_param("NextToken") or 0)
    acts = [a for a in scaling_activities(self.autoscaling_backend)
            if not group or a["AutoScalingGroupName"] == group]
    acts.sort(key=lambda a: a["StartTime"], reverse=True)
    result: dict = {"Activities": acts[start:start + max_records]}
    if start + max_records < len(acts):
        result["NextToken"] = str(start + max_records)
    return ActionResult(result)

_RESPONDER = ("moto.autoscaling.responses", "AutoScalingResponse")

_API = "https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_"

PATCHES = (
    Patch("autoscaling", ("UpdateAutoScalingGroup",),
          "keeps the group's MixedInstancesPolicy when the call leaves it out",
          "sets it to None on every update. The aws provider creates a group that has initial lifecycle hooks at "
          "size 0 and then updates its sizes, so the policy vanished",
          f"{_API}UpdateAutoScalingGroup.html", _keep_mixed_instances_policy),
    Patch("autoscaling", ("CompleteLifecycleAction", "RecordLifecycleActionHeartbeat"),
          "completes or extends a lifecycle action of a hook on the group (refused for an unknown group or hook, "
          "a result other than CONTINUE or ABANDON, or neither an instance id nor a token)",
          "has no handler for either, so the agent and the interruption handler could not complete the drain "
          "hook (moto never holds an instance in Terminating:Wait, so whether an action is pending is not checked)",
          f"{_API}CompleteLifecycleAction.html",
          sets(*_RESPONDER, complete_lifecycle_action=complete_lifecycle_action,
               record_lifecycle_action_heartbeat=record_lifecycle_action_heartbeat)),
    Patch("autoscaling", ("CreateAutoScalingGroup", "UpdateAutoScalingGroup", "SetDesiredCapacity"),
          "launches a group with a MixedInstancesPolicy on-demand up to OnDemandBaseCapacity plus the on-demand "
          "percentage above it, and spot beyond (DescribeInstances: InstanceLifecycle spot)",
          "sizes the group by that split but launches every instance on-demand, so the capacity fallback could "
          "not tell the on-demand instances its raised base brought up from the spot ones",
          "https://docs.aws.amazon.com/autoscaling/ec2/userguide/mixed-instances-groups-set-up-overview.html",
          _launch_by_market),
    Patch("autoscaling", ("DescribeScalingActivities",),
          "lists the group's scaling activities, newest first, paged by MaxRecords / NextToken",
          "answers an empty list always (it records no activity and never fails a launch for lack of capacity); "
          "the emulator answers the activities recorded through its control path, so `spotkit recover replace` "
          "can rehearse failed spot launches",
          f"{_API}DescribeScalingActivities.html",
          sets(*_RESPONDER, describe_scaling_activities=describe_scaling_activities)),
)
