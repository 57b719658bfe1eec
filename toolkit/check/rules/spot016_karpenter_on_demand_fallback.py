"""SPOT016: Karpenter spot NodePool without an on-demand fallback.

A NodePool becomes a resource of type ``karpenter_node_pool`` (``loader.load_node_pools``). Without a
``karpenter.sh/capacity-type`` requirement a pool launches on-demand only (Karpenter's default).
"""

from __future__ import annotations

from typing import Iterator

from spotkit.check.graph import NODE_POOL, ResourceGraph
from spotkit.check.rules.base import Rule
from spotkit.k8s.karpenter import capacity_types


RULE = Rule(
    id="SPOT016",
    severity="warning",
    title="Karpenter spot NodePool without an on-demand fallback",
    description="a Karpenter NodePool launches spot only and no NodePool given allows on-demand",
    fix='allow both in the NodePool (karpenter.sh/capacity-type In ["spot", "on-demand"]: Karpenter prefers spot and '
        "falls back), or add an on-demand NodePool with a lower weight",
    doc="https://karpenter.sh/docs/concepts/nodepools/#capacity-type",
)


def check(graph: ResourceGraph) -> Iterator:
    pools = graph.of_type(NODE_POOL)
    fallback = [p for p in pools if "on-demand" in capacity_types(p.values)]
    for p in pools:
        kinds = capacity_types(p.values)
        if kinds == {"spot"} and not fallback:
            yield p, (f"NodePool {p.values['metadata'].get('name')} launches spot only and no NodePool given allows on-demand: "
                      "when spot capacity for its instance types runs out, pods stay pending")
