"""Where the drill's replicas get their capacity: a spot group that can run out, and the handler's fallback.

The spot replicas live in one Auto Scaling group (``gpu_inference``'s spot capacity provider: a mixed
instances policy, on-demand base 0, 0 % on-demand above it). Here that group is an in-memory Auto
Scaling API (``describe_auto_scaling_groups``, ``update_auto_scaling_group``, ``create_or_update_tags``)
so the handler's own decision code runs on it unchanged: when a spot launch fails for want of capacity,
``spotkit.runtime.interruption.fallback.classify`` reads the launch error and ``fallback.fall_back`` decides to
raise the group's on-demand base by the shortfall; the replacement is then launched on-demand.

A replacement started before the reclaim raises the group's desired capacity by one (ECS managed
scaling asks for an instance for the task it places), and the reclaim takes it back.
"""

from __future__ import annotations

import copy
import threading
from datetime import datetime, timezone
from typing import Optional

from spotkit.runtime.interruption import fallback

SPOT_GROUP = "spotkit-gpu-spot"
NO_CAPACITY_ERROR = ("Could not launch Spot Instances. InsufficientInstanceCapacity - There is no Spot capacity "
                     "available that matches your request. Launching EC2 instance failed.")


class InMemoryAutoScaling:
    """The three Auto Scaling calls ``fallback.fall_back`` makes, on one group held in memory, and EC2's
    ``describe_instances`` paginator for its instances (the market each was launched in, as
    ``InstanceLifecycle``: Auto Scaling's own description does not say)."""

    def __init__(self, group: str, desired: int):
        self.lock = threading.Lock()
        self.group = {
            "AutoScalingGroupName": group, "DesiredCapacity": desired, "MinSize": 0, "MaxSize": desired + 3,
            "MixedInstancesPolicy": {
                "LaunchTemplate": {"LaunchTemplateSpecification": {"LaunchTemplateName": f"{group}-lt",
                                                                   "Version": "$Latest"}},
                "InstancesDistribution": {"OnDemandBaseCapacity": 0, "OnDemandPercentageAboveBaseCapacity": 0}},
            "Instances": [], "Tags": []}
        self.calls: list[str] = []
        self.lifecycles: dict[str, str] = {}

    def describe_auto_scaling_groups(self, AutoScalingGroupNames):  # noqa: N803 - the boto3 signature
        with self.lock:
            found = [copy.deepcopy(self.group)] if self.group["AutoScalingGroupName"] in AutoScalingGroupNames else []
        return {"AutoScalingGroups": found}

    def update_auto_scaling_group(self, AutoScalingGroupName, MixedInstancesPolicy):  # noqa: N803
        with self.lock:
            self.calls.append("update_auto_scaling_group")
            self.group["MixedInstancesPolicy"] = copy.deepcopy(MixedInstancesPolicy)
        return {}

    def create_or_update_tags(self, Tags):  # noqa: N803
        with self.lock:
            self.calls.append("create_or_update_tags")
            tags = {t["Key"]: t for t in self.group["Tags"]}
            for tag in Tags:
                tags[tag["Key"]] = {"Key": tag["Key"], "Value": tag["Value"]}
            self.group["Tags"] = list(tags.values())
        return {}

    def get_paginator(self, operation: str):  # EC2's, for describe_instances
        assert operation == "describe_instances", operation
        return self

    def paginate(self, InstanceIds):  # noqa: N803
        with self.lock:
            found = [{"InstanceId": i, "State": {"Name": "running"},
                      **({"InstanceLifecycle": "spot"} if self.lifecycles[i] == "spot" else {})}
                     for i in InstanceIds if i in self.lifecycles]
        return [{"Reservations": [{"Instances": found}]}]

    # the platform's side: instances come and go, managed scaling moves the desired capacity
    def add_instance(self, instance_id: str, lifecycle: str) -> None:
        with self.lock:
            self.group["Instances"].append({"InstanceId": instance_id, "LifecycleState": "InService"})
            self.lifecycles[instance_id] = lifecycle

    def remove_instance(self, instance_id: str) -> None:
        with self.lock:
            self.group["Instances"] = [i for i in self.group["Instances"] if i["InstanceId"] != instance_id]
            self.lifecycles.pop(instance_id, None)

    def on_demand_instances(self) -> int:
        with self.lock:
            return sum(1 for lifecycle in self.lifecycles.values() if lifecycle == "on-demand")

    def change_desired(self, delta: int) -> None:
        with self.lock:
            self.group["DesiredCapacity"] = max(0, self.group["DesiredCapacity"] + delta)

    @property
    def on_demand_base(self) -> int:
        with self.lock:
            return fallback.on_demand_base(self.group)


class SpotCapacity:
    """Launch decisions for the spot group: spot while capacity is there, on-demand after the fallback."""

    def __init__(self, spot_replicas: int, policy: Optional[fallback.FallbackPolicy] = None):
        self.autoscaling = InMemoryAutoScaling(SPOT_GROUP, spot_replicas)
        self.policy = policy or fallback.FallbackPolicy()
        self.decisions: list[dict] = []

    def launch(self, instance_id: str, spot_available: bool) -> str:
        """The lifecycle (``spot`` or ``on-demand``) the new instance gets, after the fallback if needed."""
        if not spot_available:
            cause = fallback.classify(NO_CAPACITY_ERROR)
            decision = None
            if cause == fallback.SPOT_CAPACITY:
                decision = fallback.fall_back(self.autoscaling, self.autoscaling, SPOT_GROUP, policy=self.policy,
                                              now=datetime.now(timezone.utc), cause=NO_CAPACITY_ERROR)
                self.decisions.append({"instance": instance_id, **decision.to_detail(), "classified": cause,
                                       "message": decision.message})
            if decision is None or self.autoscaling.on_demand_base <= self.autoscaling.on_demand_instances():
                raise RuntimeError(f"no capacity for {instance_id}: spot failed ({cause}) and the fallback "
                                   f"decided {decision.action if decision else 'nothing'}")
            lifecycle = "on-demand"
        else:
            lifecycle = "spot"
        self.autoscaling.add_instance(instance_id, lifecycle)
        return lifecycle
