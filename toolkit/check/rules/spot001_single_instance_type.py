"""SPOT001: Spot capacity with a single instance type."""

from __future__ import annotations

from typing import Iterator

from spotkit.check.graph import Resource, ResourceGraph, block, blocks, is_unresolved, unknown_block
from spotkit.check.rules.base import Rule, Undecided
from spotkit.check.rules.helpers import (EC2_FLEET, SPOT_FLEET, SPOT_REQUEST, diverse, fleet_types, instance_types,
                                         kind_of)


RULE = Rule(
    id="SPOT001",
    severity="error",
    title="Spot capacity with a single instance type",
    description="a spot group, EKS spot node group, spot fleet, EC2 fleet on spot or spot instance request can launch one "
        "instance type (UNDECIDED when the types are not known before apply)",
    fix="list at least 3 instance types of similar size (an ASG's mixed_instances_policy.launch_template.override, a fleet's "
        "launch_template_config overrides) or use instance_requirements; replace a lone spot instance request by an ASG or EC2 fleet",
    doc="https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/spot-best-practices.html",
)


def types_unknown(group: Resource) -> bool:
    """True when the instance types are written but not known before apply (not attribute-based)."""
    if group.type in (SPOT_FLEET, EC2_FLEET, SPOT_REQUEST):
        return fleet_types(group, ResourceGraph())[1]
    if unknown_block(group.values, "mixed_instances_policy", "launch_template", "override"):
        return True
    if group.type == "aws_eks_node_group":
        types = group.values.get("instance_types")
        return is_unresolved(types) or (isinstance(types, list) and any(is_unresolved(t) for t in types))
    overrides = blocks(block(group.values, "mixed_instances_policy", "launch_template"), "override")
    if any(o.get("instance_requirements") for o in overrides):
        return False
    return any(o.get("instance_type") is None or is_unresolved(o.get("instance_type")) for o in overrides)


def check(graph: ResourceGraph) -> Iterator:
    for g in diverse(graph):
        types = instance_types(g, graph)
        if types is None and types_unknown(g):
            yield Undecided(g, f"the instance types of spot {kind_of(g)} {g.address} are not known before apply: could not count them")
        if types is not None and len(types) < 2:
            yield g, f"spot {kind_of(g)} {g.address} can launch only one instance type ({', '.join(types)}): when that spot pool is reclaimed, nothing replaces it"
