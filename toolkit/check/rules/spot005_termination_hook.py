"""SPOT005: No termination lifecycle hook."""

from __future__ import annotations

from typing import Iterator

from spotkit.check.graph import Resource, ResourceGraph, blocks, is_unresolved, unknown_block
from spotkit.check.rules.base import Rule, Undecided
from spotkit.check.rules.helpers import capacity_providers_for, draining, names_match, spot_groups
from spotkit.runtime.notice import TERMINATING_TRANSITION as TERMINATING


RULE = Rule(
    id="SPOT005",
    severity="error",
    title="No termination lifecycle hook",
    description=f"a spot group has no {TERMINATING} hook (initial hook, aws_autoscaling_lifecycle_hook by reference or "
        "name) and no ECS capacity provider with managed draining",
    fix=f"add a lifecycle hook with lifecycle_transition {TERMINATING} (initial_lifecycle_hook or aws_autoscaling_lifecycle_hook), "
        "heartbeat 60-300 s, or an ECS capacity provider with managed_draining ENABLED",
    doc="https://docs.aws.amazon.com/autoscaling/ec2/userguide/lifecycle-hooks.html",
)


def hooks_for(group: Resource, graph: ResourceGraph) -> list:
    hooks = [h for h in blocks(group.values, "initial_lifecycle_hook") if h.get("lifecycle_transition") == TERMINATING]
    for h in graph.same_config(group, "aws_autoscaling_lifecycle_hook"):
        if h.values.get("lifecycle_transition") != TERMINATING:
            continue
        if h.refers_to(group, "autoscaling_group_name") or names_match(h.values.get("autoscaling_group_name"), group):
            hooks.append(h)
    return hooks


def _unknown_hook_transitions(group: Resource, graph: ResourceGraph) -> list[str]:
    """Transitions of the group's lifecycle hooks that are not known before apply."""
    found = [h.get("lifecycle_transition") for h in blocks(group.values, "initial_lifecycle_hook")]
    found += [h.values.get("lifecycle_transition") for h in graph.same_config(group, "aws_autoscaling_lifecycle_hook")
              if h.refers_to(group, "autoscaling_group_name") or names_match(h.values.get("autoscaling_group_name"), group)]
    return [str(t) for t in found if is_unresolved(t)]


def check(graph: ResourceGraph) -> Iterator:
    for g in spot_groups(graph):
        if hooks_for(g, graph):
            continue
        if any(draining(cp) == "ENABLED" for cp in capacity_providers_for(g, graph)):
            continue  # ECS managed draining adds its own termination hook
        unknown = [f"ECS managed draining of {cp.address} is {draining(cp)}" for cp in capacity_providers_for(g, graph)
                   if is_unresolved(draining(cp))]
        unknown += [f"a lifecycle hook's lifecycle_transition is {t}" for t in _unknown_hook_transitions(g, graph)]
        if unknown_block(g.values, "initial_lifecycle_hook"):
            unknown.append("its initial_lifecycle_hook blocks come from a dynamic block over a collection")
        if unknown:
            yield Undecided(g, f"spot group {g.address} has no known {TERMINATING} hook, and {'; '.join(unknown)}, "
                               "not known before apply")
            continue
        yield g, f"spot group {g.address} has no {TERMINATING} lifecycle hook: instances are terminated without time to drain or checkpoint"
