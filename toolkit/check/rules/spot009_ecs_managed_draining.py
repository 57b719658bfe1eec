"""SPOT009: ECS spot capacity provider without managed draining."""

from __future__ import annotations

from typing import Iterator

from spotkit.check.graph import ResourceGraph, is_unresolved
from spotkit.check.rules.base import Rule, Undecided
from spotkit.check.rules.helpers import ASG, draining, spot_share


RULE = Rule(
    id="SPOT009",
    severity="error",
    title="ECS spot capacity provider without managed draining",
    description='an ECS capacity provider over a spot group has managed_draining = "DISABLED"',
    fix='set auto_scaling_group_provider.managed_draining = "ENABLED" (the default)',
    doc="https://docs.aws.amazon.com/AmazonECS/latest/developerguide/enable-managed-instance-draining.html",
)


def check(graph: ResourceGraph) -> Iterator:
    for cp in graph.of_type("aws_ecs_capacity_provider"):
        if is_unresolved(draining(cp)):
            if any(spot_share(g, graph) for g in graph.resolve(cp, "auto_scaling_group_arn", ASG)):
                yield Undecided(cp, f"managed_draining of capacity provider {cp.address} over a spot group is {draining(cp)}, "
                                    "not known before apply")
            continue
        if draining(cp) != "DISABLED":
            continue
        for g in graph.resolve(cp, "auto_scaling_group_arn", ASG):
            if spot_share(g, graph):
                yield cp, f"capacity provider {cp.address} over spot group {g.address} has managed_draining DISABLED: tasks are killed, not moved, when an instance is reclaimed"
