"""SPOT011: Spot interruption events not routed anywhere."""

from __future__ import annotations

import json
from typing import Iterator

from spotkit.check.graph import NODE_POOL, Resource, ResourceGraph, as_list
from spotkit.check.rules.base import Rule
from spotkit.check.rules.helpers import names_match, spot_capacity
from spotkit.runtime.interruption.events import SPOT_WARNING_DETAIL_TYPE as INTERRUPTION_DETAIL_TYPE


RULE = Rule(
    id="SPOT011",
    severity="warning",
    title="Spot interruption events not routed anywhere",
    description=f"a configuration with spot capacity has no EventBridge rule matching '{INTERRUPTION_DETAIL_TYPE}', "
        "or the rule has no target",
    fix=f'add an aws_cloudwatch_event_rule with event_pattern {{"source": ["aws.ec2"], "detail-type": ["{INTERRUPTION_DETAIL_TYPE}"]}} '
        "and an aws_cloudwatch_event_target (SQS queue, Lambda, SNS)",
    doc="https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/spot-instance-termination-notices.html",
)


def interruption_rules(graph: ResourceGraph, config: str) -> list[Resource]:
    found = []
    for rule in graph.of_type("aws_cloudwatch_event_rule"):
        if rule.config != config:
            continue
        raw = rule.values.get("event_pattern")
        if not isinstance(raw, str):
            continue
        try:
            pattern = json.loads(raw)
        except json.JSONDecodeError:
            if INTERRUPTION_DETAIL_TYPE in raw:
                found.append(rule)
            continue
        if not isinstance(pattern, dict):
            continue
        sources = as_list(pattern.get("source"))
        detail_types = as_list(pattern.get("detail-type"))
        if "aws.ec2" in sources and (not detail_types or INTERRUPTION_DETAIL_TYPE in detail_types):
            found.append(rule)
    return found


def targets_of(rule: Resource, graph: ResourceGraph) -> list[Resource]:
    return [t for t in graph.same_config(rule, "aws_cloudwatch_event_target")
            if t.refers_to(rule, "rule") or names_match(t.values.get("rule"), rule)]


def _spot_capacity(graph: ResourceGraph) -> dict[str, Resource]:
    """The first spot resource of each configuration file."""
    found: dict[str, Resource] = {}
    for r in spot_capacity(graph):
        if r.type == NODE_POOL:
            continue  # Karpenter reads its own interruption queue
        found.setdefault(r.config, r)
    return found


def check(graph: ResourceGraph) -> Iterator:
    for config, first in _spot_capacity(graph).items():
        rules = interruption_rules(graph, config)
        if not rules:
            yield first, ("no EventBridge rule matches '" + INTERRUPTION_DETAIL_TYPE + "' in this configuration: "
                          "nothing outside the instance hears that spot capacity is being reclaimed")
        elif not any(targets_of(r, graph) for r in rules):
            yield rules[0], f"EventBridge rule {rules[0].address} matches spot interruptions but has no target: the events go nowhere"
