"""SPOT013: Lowest-price spot allocation."""

from __future__ import annotations

from typing import Iterator

from spotkit.check.graph import ResourceGraph, block, is_unresolved, unknown_block
from spotkit.check.rules.base import Rule, Undecided
from spotkit.check.rules.helpers import as_int, spot_groups


RULE = Rule(
    id="SPOT013",
    severity="warning",
    title="Lowest-price spot allocation",
    description="a spot group's spot_allocation_strategy is lowest-price or unset (the AWS default), or a spot fleet / "
        "EC2 fleet allocates lowestPrice",
    fix='set spot_allocation_strategy = "price-capacity-optimized" (allocation_strategy = "priceCapacityOptimized" on fleets) '
        "and drop spot_instance_pools",
    doc="https://docs.aws.amazon.com/autoscaling/ec2/userguide/allocation-strategies.html",
)


def check(graph: ResourceGraph) -> Iterator:
    for g in spot_groups(graph):
        mip = block(g.values, "mixed_instances_policy")
        if not mip:
            continue
        if unknown_block(mip, "instances_distribution"):
            yield Undecided(g, f"the instances_distribution of spot group {g.address} is a dynamic block over a collection "
                               "not known before apply")
            continue
        dist = block(mip, "instances_distribution")
        strategy = dist.get("spot_allocation_strategy")
        if is_unresolved(strategy):
            yield Undecided(g, f"spot_allocation_strategy of spot group {g.address} is {strategy}, not known before apply")
            continue
        if strategy in (None, "lowest-price"):
            pools = as_int(dist.get("spot_instance_pools"), 2 if dist.get("spot_instance_pools") is None else None)
            how = "lowest-price" if strategy else "not set, so lowest-price (the AWS default)"
            yield g, (f"spot group {g.address} uses spot_allocation_strategy {how}"
                      + (f" over {pools} pool(s)" if pools else "")
                      + ": it fills the cheapest pools, the ones most likely to be reclaimed, and they are reclaimed together")
    for f in graph.of_type("aws_spot_fleet_request"):
        strategy = f.values.get("allocation_strategy")
        if is_unresolved(strategy):
            yield Undecided(f, f"allocation_strategy of {f.address} is {strategy}, not known before apply")
        elif strategy in (None, "lowestPrice"):
            yield f, f"{f.address} uses allocation_strategy {strategy or 'not set, so lowestPrice (the default)'}: it fills the cheapest pools, the ones most likely to be reclaimed"
    for f in graph.of_type("aws_ec2_fleet"):
        target = block(f.values, "target_capacity_specification").get("default_target_capacity_type")
        if target != "spot":
            continue
        strategy = block(f.values, "spot_options").get("allocation_strategy")
        if is_unresolved(strategy):
            yield Undecided(f, f"spot_options.allocation_strategy of {f.address} is {strategy}, not known before apply")
        elif strategy in (None, "lowestPrice", "lowest-price"):
            yield f, f"{f.address} uses spot allocation_strategy {strategy or 'not set, so lowestPrice (the default)'}: it fills the cheapest pools, the ones most likely to be reclaimed"
