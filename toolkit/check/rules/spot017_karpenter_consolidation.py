"""SPOT017: Karpenter consolidation that fights spot interruptions.

Without a ``disruption`` block a NodePool consolidates ``WhenEmptyOrUnderutilized`` with
``consolidateAfter: 0s`` (Karpenter's default).
"""

from __future__ import annotations

from typing import Iterator

from spotkit.check.graph import NODE_POOL, ResourceGraph
from spotkit.check.rules.base import Rule
from spotkit.k8s.karpenter import capacity_types
from spotkit.k8s.validate import duration_seconds


UNDERUTILIZED = ("WhenEmptyOrUnderutilized", "WhenUnderutilized")  # v1, v1beta1
MIN_CONSOLIDATE_AFTER_SECONDS = 300
# the fix by API version: v1beta1 refuses consolidateAfter together with WhenUnderutilized, so
# "set consolidateAfter" is only the fix on v1 (where it may go with WhenEmptyOrUnderutilized)
CONSOLIDATION_FIX = {
    "karpenter.sh/v1": f"v1: set disruption.consolidateAfter to {MIN_CONSOLIDATE_AFTER_SECONDS // 60}m or more (or "
                       'consolidationPolicy: WhenEmpty), or add a disruption budget nodes: "0" outside a maintenance schedule',
    "karpenter.sh/v1beta1": "v1beta1 (which refuses consolidateAfter with WhenUnderutilized): set consolidationPolicy: WhenEmpty "
                            f"with consolidateAfter: {MIN_CONSOLIDATE_AFTER_SECONDS // 60}m, or add a disruption budget "
                            'nodes: "0" outside a maintenance schedule, or move the pool to karpenter.sh/v1',
}


RULE = Rule(
    id="SPOT017",
    severity="warning",
    title="Karpenter consolidation that fights spot interruptions",
    description="a NodePool that may launch spot consolidates when underutilized (v1 WhenEmptyOrUnderutilized, the "
        f"default; v1beta1 WhenUnderutilized) sooner than {MIN_CONSOLIDATE_AFTER_SECONDS // 60} min "
        'after a change, and no nodes: "0" budget stops it',
    fix=CONSOLIDATION_FIX["karpenter.sh/v1"] + "; " + CONSOLIDATION_FIX["karpenter.sh/v1beta1"],
    doc="https://karpenter.sh/docs/concepts/disruption/#consolidation",
)


def _consolidation_off(disruption: dict) -> bool:
    """True when consolidation waits long enough, never runs, or a budget of no nodes stops it."""
    after = disruption.get("consolidateAfter", "0s")
    seconds = None if after == "Never" else duration_seconds(str(after))
    if after == "Never" or (seconds is not None and seconds >= MIN_CONSOLIDATE_AFTER_SECONDS):
        return True
    budgets = disruption.get("budgets")
    return isinstance(budgets, list) and any(str(b.get("nodes", "")).strip() in ("0", "0%") and not b.get("schedule")
                                             for b in budgets if isinstance(b, dict))


def check(graph: ResourceGraph) -> Iterator:
    for p in graph.of_type(NODE_POOL):
        if "spot" not in capacity_types(p.values):
            continue
        disruption = (p.values.get("spec") or {}).get("disruption") or {}
        policy = disruption.get("consolidationPolicy", "WhenEmptyOrUnderutilized")
        if policy not in UNDERUTILIZED or _consolidation_off(disruption):
            continue
        after = disruption.get("consolidateAfter", "0s")
        name = p.values["metadata"].get("name")
        version = str(p.values.get("apiVersion", ""))
        fix = CONSOLIDATION_FIX.get(version, CONSOLIDATION_FIX["karpenter.sh/v1"])
        when = "(v1beta1 allows no consolidateAfter with WhenUnderutilized)" if version == "karpenter.sh/v1beta1" \
            else f"after {after or '0s'}"
        yield p, (f"NodePool {name} may launch spot and consolidates {policy} {when}: Karpenter replaces "
                  "spot nodes on its own schedule on top of the interruptions AWS makes, so pods move twice as often"), "spot", fix
