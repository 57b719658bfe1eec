"""SPOT004: Capacity rebalance off."""

from __future__ import annotations

from typing import Iterator

from spotkit.check.graph import ResourceGraph, is_unresolved
from spotkit.check.rules.base import Rule, Undecided
from spotkit.check.rules.helpers import as_bool, spot_groups


RULE = Rule(
    id="SPOT004",
    severity="warning",
    title="Capacity rebalance off",
    description="a spot group has capacity_rebalance off (the AWS default)",
    fix="set capacity_rebalance = true on the group",
    doc="https://docs.aws.amazon.com/autoscaling/ec2/userguide/ec2-auto-scaling-capacity-rebalancing.html",
)


def check(graph: ResourceGraph) -> Iterator:
    for g in spot_groups(graph):
        raw = g.values.get("capacity_rebalance")
        if is_unresolved(raw):
            yield Undecided(g, f"capacity_rebalance of spot group {g.address} is {raw}, not known before apply")
        elif not as_bool(raw, False):
            yield g, f"spot group {g.address} has capacity_rebalance off: it waits for the 2-minute notice instead of replacing at-risk instances early"
