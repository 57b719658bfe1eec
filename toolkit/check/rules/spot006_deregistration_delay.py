"""SPOT006: Target group deregistration delay longer than the spot notice."""

from __future__ import annotations

from typing import Iterator

from spotkit.check.graph import ResourceGraph, is_unresolved
from spotkit.check.rules.base import Rule, Undecided
from spotkit.check.rules.helpers import (TARGET_GROUPS, as_int, provider_is_spot, service_strategy, spot_groups,
                                         target_groups_of)
from spotkit.runtime.notice import SPOT_NOTICE_SECONDS


RULE = Rule(
    id="SPOT006",
    severity="error",
    title="Target group deregistration delay longer than the spot notice",
    description=f"a target group in front of spot (ASG target_group_arns, aws_autoscaling_attachment, ECS service on spot) "
        f"has deregistration_delay over {SPOT_NOTICE_SECONDS} s (default 300)",
    fix=f"set deregistration_delay to {SPOT_NOTICE_SECONDS - 30} or less on target groups in front of spot capacity",
    doc="https://docs.aws.amazon.com/elasticloadbalancing/latest/application/edit-target-group-attributes.html#deregistration-delay",
)


def check(graph: ResourceGraph) -> Iterator:
    # Target groups in front of spot capacity: a spot group's own, and those of services placed on spot.
    fronts = [(tg, f"spot targets of {g.address}") for g in spot_groups(graph) for tg in target_groups_of(g, graph)]
    for svc in graph.of_type("aws_ecs_service"):
        if any(provider_is_spot(graph, svc, e)[0] for e in service_strategy(svc, graph)):
            fronts += [(tg, f"spot tasks of {svc.address}")
                       for tg in graph.resolve(svc, "target_group_arn", *TARGET_GROUPS)]
    seen = set()
    for tg, what in fronts:
        if (tg.config, tg.file, tg.address) in seen:
            continue
        seen.add((tg.config, tg.file, tg.address))
        raw = tg.values.get("deregistration_delay")
        if is_unresolved(raw):
            yield Undecided(tg, f"deregistration_delay of target group {tg.address} (in front of {what}) is {raw}, not known before apply")
            continue
        delay = as_int(raw, 300 if raw is None else None)
        if delay is not None and delay > SPOT_NOTICE_SECONDS:
            yield tg, (f"target group {tg.address} waits {delay} s to deregister {what}; "
                       f"the spot notice is {SPOT_NOTICE_SECONDS} s, so in-flight requests are cut instead of drained")
