"""SPOT010: Service on spot with no on-demand base."""

from __future__ import annotations

from typing import Iterator

from spotkit.check.graph import ResourceGraph, block, unknown_block
from spotkit.check.rules.base import Rule, Undecided
from spotkit.check.rules.helpers import as_int, provider_is_spot, service_strategy, spot_groups, target_groups_of


RULE = Rule(
    id="SPOT010",
    severity="warning",
    title="Service on spot with no on-demand base",
    description="an ECS service on spot has no on-demand base (own strategy or the cluster default), or a spot group "
        "behind a load balancer has on_demand_base_capacity = 0",
    fix="give the service a capacity_provider_strategy entry with base >= 1 on an on-demand provider (or on_demand_base_capacity >= 1 on the group)",
    doc="https://docs.aws.amazon.com/AmazonECS/latest/developerguide/cluster-capacity-providers.html",
)


def check(graph: ResourceGraph) -> Iterator:
    for svc in graph.of_type("aws_ecs_service"):
        if unknown_block(svc.values, "capacity_provider_strategy"):
            yield Undecided(svc, f"the capacity_provider_strategy of service {svc.address} is a dynamic block over a collection "
                                 "not known before apply: could not tell whether it runs on spot with an on-demand base")
            continue
        entries = service_strategy(svc, graph)
        kinds = [(e, *provider_is_spot(graph, svc, e)) for e in entries]
        if not any(spot for _, spot, _ in kinds):
            continue
        floor = any((spot is False and (as_int(e.get("base"), 0) or 0) > 0) or inner_base for e, spot, inner_base in kinds)
        if not floor:
            yield svc, f"service {svc.address} runs on spot with no on-demand base: one reclaim can take every task down at once"
    for g in spot_groups(graph):
        if not (target_groups_of(g, graph) or g.values.get("load_balancers")):
            continue
        base = as_int(block(g.values, "mixed_instances_policy", "instances_distribution").get("on_demand_base_capacity"), 0)
        if base == 0:
            yield g, f"spot group {g.address} serves a load balancer with on_demand_base_capacity 0: one reclaim can take every instance down at once"
