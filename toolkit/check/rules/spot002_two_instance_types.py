"""SPOT002: Spot capacity with fewer than 3 instance types."""

from __future__ import annotations

from typing import Iterator

from spotkit.check.graph import ResourceGraph
from spotkit.check.rules.base import Rule
from spotkit.check.rules.helpers import diverse, instance_types, kind_of


RULE = Rule(
    id="SPOT002",
    severity="warning",
    title="Spot capacity with fewer than 3 instance types",
    description="spot capacity (group, node group, fleet) has 2 instance types",
    fix="add a third instance type of similar size, or use attribute-based instance_requirements",
    doc="https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/spot-best-practices.html",
)


def check(graph: ResourceGraph) -> Iterator:
    for g in diverse(graph):
        types = instance_types(g, graph)
        if types is not None and len(types) == 2:
            yield g, f"spot {kind_of(g)} {g.address} has 2 instance types ({', '.join(types)}); losing one spot pool halves the choice"
