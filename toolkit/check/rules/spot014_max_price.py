"""SPOT014: Spot max price set."""

from __future__ import annotations

from typing import Iterator

from spotkit.check.graph import Resource, ResourceGraph, block, blocks, is_unresolved
from spotkit.check.rules.base import Rule, Undecided
from spotkit.check.rules.helpers import spot_groups


RULE = Rule(
    id="SPOT014",
    severity="warning",
    title="Spot max price set",
    description="a spot max price is set: spot_max_price, spot_options.max_price, spot_price on spot requests, fleets "
        "and launch configurations, an EC2 fleet override's max_price",
    fix="remove spot_max_price / max_price / spot_price: without it you pay the current spot price and are never "
        "interrupted for price (the cap is the on-demand price)",
    doc="https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_InstancesDistribution.html",
)


def check(graph: ResourceGraph) -> Iterator:
    def price_hit(r: Resource, where: str, value):
        if value is None or value == "":
            return None
        if is_unresolved(value):
            return Undecided(r, f"{where} of {r.address} is {value}, not known before apply")
        return (r, f"{r.address} sets {where} = {value}: AWS interrupts the instances whenever the spot price rises above it, "
                   "on top of capacity reclaims")

    hits = []
    for g in spot_groups(graph):
        hits.append(price_hit(g, "mixed_instances_policy.instances_distribution.spot_max_price",
                              block(g.values, "mixed_instances_policy", "instances_distribution").get("spot_max_price")))
    for r in graph.of_type("aws_launch_template", "aws_instance"):
        opts = block(r.values, "instance_market_options")
        if opts.get("market_type") == "spot":
            hits.append(price_hit(r, "instance_market_options.spot_options.max_price", block(opts, "spot_options").get("max_price")))
    for r in graph.of_type("aws_spot_instance_request", "aws_spot_fleet_request", "aws_launch_configuration"):
        hits.append(price_hit(r, "spot_price", r.values.get("spot_price")))
    for r in graph.of_type("aws_ec2_fleet"):
        if block(r.values, "target_capacity_specification").get("default_target_capacity_type") == "spot":
            for cfg in blocks(r.values, "launch_template_config"):
                for o in blocks(cfg, "override"):
                    hits.append(price_hit(r, "launch_template_config.override.max_price", o.get("max_price")))
    yield from (h for h in hits if h is not None)
