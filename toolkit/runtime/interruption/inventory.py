"""What there is in the account and region: read once for a batch, shared by the decision and the actions.

- ``describe_instances_batch`` / ``describe_groups_batch``: the instances and Auto Scaling groups a batch
  names, one call per 200 instances / 50 groups (``Handler.decide`` decides from them; the replacement
  reads the instance tags and group capacity from them).
- ``Discovery``: the region's instance target groups and ECS clusters, and the ports each instance is
  registered on, cached per handler (a deploy changes them, a wave does not).

Standard library and boto3 clients only: this runs in the Lambda.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Optional, Sequence

DESCRIBE_FILTER_MAX_VALUES = 200
DESCRIBE_GROUPS_MAX_NAMES = 50
# Ports a group's targets are registered on (ECS bridge networking registers an instance on ephemeral
# ports): re-read at most once a minute, so a registration made during a wave is seen soon.
REGISTRATIONS_TTL_SECONDS = 60.0


def chunks(items: Sequence, size: int):
    for start in range(0, len(items), size):
        yield items[start:start + size]


def describe_instances_batch(ec2, instance_ids: Sequence[str]) -> dict[str, dict]:
    """Instance id -> its DescribeInstances entry, for every id that exists (one call per 200 ids; a
    filter, not InstanceIds, so one unknown id does not fail the whole batch)."""
    found: dict[str, dict] = {}
    for chunk in chunks(sorted(set(instance_ids)), DESCRIBE_FILTER_MAX_VALUES):
        for page in ec2.get_paginator("describe_instances").paginate(
                Filters=[{"Name": "instance-id", "Values": list(chunk)}]):
            for r in page["Reservations"]:
                for inst in r["Instances"]:
                    found[inst["InstanceId"]] = inst
    return found


def describe_groups_batch(autoscaling, names: Sequence[str]) -> dict[str, dict]:
    """Auto Scaling group name -> its DescribeAutoScalingGroups entry, for every name that exists (50 a call)."""
    found: dict[str, dict] = {}
    for chunk in chunks(sorted(set(names)), DESCRIBE_GROUPS_MAX_NAMES):
        answer = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=list(chunk))
        found.update({g["AutoScalingGroupName"]: g for g in answer["AutoScalingGroups"]})
    return found


def list_target_groups(elbv2) -> list[str]:
    arns: list[str] = []
    for page in elbv2.get_paginator("describe_target_groups").paginate():
        arns.extend(tg["TargetGroupArn"] for tg in page["TargetGroups"] if tg.get("TargetType", "instance") == "instance")
    return arns


class Discovery:
    """The region's instance target groups and ECS clusters, listed once and reused for ``ttl_seconds``.

    Both change rarely (a deploy), a wave lasts minutes: without the cache every batch would list
    them again. Thread-safe; the lock is held only while a list is refreshed. ``clusters`` given at
    construction (``--cluster``) are used as they are, never listed."""

    def __init__(self, ttl_seconds: float = 300.0, *, clusters: Sequence[str] = (), clock: Optional[Callable[[], float]] = None):
        self.ttl_seconds = ttl_seconds
        self._fixed_clusters = list(clusters)
        self._clock = clock or time.monotonic
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, list[str]]] = {}

    def _get(self, key: str, load: Callable[[], list], ttl: Optional[float] = None) -> list:
        ttl = self.ttl_seconds if ttl is None else ttl
        hit = self._cache.get(key)
        if hit is not None and self._clock() - hit[0] <= ttl:
            return list(hit[1])
        with self._lock:
            hit = self._cache.get(key)
            if hit is None or self._clock() - hit[0] > ttl:
                hit = (self._clock(), load())
                self._cache[key] = hit
            return list(hit[1])

    def target_groups(self, elbv2) -> list[str]:
        return self._get("target_groups", lambda: list_target_groups(elbv2))

    def registrations(self, elbv2, target_group_arn: str) -> dict[str, set]:
        """Instance id -> the ports it was registered on in this group, from one whole-group
        DescribeTargetHealth at most every ``REGISTRATIONS_TTL_SECONDS`` (not once per batch). Only a
        hint of which ports to ask about: ``deregister_batch`` asks for the batch's own targets."""
        rows = self._get(f"registrations:{target_group_arn}", lambda: [
            (h["Target"]["Id"], h["Target"]["Port"])
            for h in elbv2.describe_target_health(TargetGroupArn=target_group_arn)["TargetHealthDescriptions"]
            if "Port" in h["Target"]], ttl=min(self.ttl_seconds, REGISTRATIONS_TTL_SECONDS))
        found: dict[str, set] = {}
        for instance_id, port in rows:
            found.setdefault(instance_id, set()).add(port)
        return found

    def clusters(self, ecs) -> list[str]:
        if self._fixed_clusters:
            return list(self._fixed_clusters)
        return self._get("clusters", lambda: [arn for page in ecs.get_paginator("list_clusters").paginate()
                                              for arn in page["clusterArns"]])
