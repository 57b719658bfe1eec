"""Spot rules for Karpenter NodePools (``karpenter.sh/v1`` and ``v1beta1``), read from the same YAML
files ``spotkit k8s check`` reads; ``spotkit check`` runs them beside the Terraform rules.

A NodePool becomes a resource of type ``karpenter_node_pool`` (address ``NodePool/<name>``) whose
values are the manifest. Karpenter's defaults apply where a field is absent: no
``karpenter.sh/capacity-type`` requirement means on-demand only; no ``disruption`` block means
``consolidationPolicy: WhenEmptyOrUnderutilized`` with ``consolidateAfter: 0s``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Iterator
from toolkit.errors import ToolkitError
from toolkit.k8s.manifests import KARPENTER_CAPACITY_TYPE
from toolkit.k8s.validate import duration_seconds

if TYPE_CHECKING:  # toolkit.check's rules import this module: a run-time import here would be circular
    from toolkit.check.loader import Resource

NODE_POOL = "karpenter_node_pool"
CAPACITY_TYPES = ("spot", "on-demand", "reserved")
UNDERUTILIZED = ("WhenEmptyOrUnderutilized", "WhenUnderutilized")  # v1, v1beta1
MIN_CONSOLIDATE_AFTER_SECONDS = 300
# SPOT017's fix by API version: v1beta1 refuses consolidateAfter together with WhenUnderutilized, so
# "set consolidateAfter" is only the fix on v1 (where it may go with WhenEmptyOrUnderutilized)
CONSOLIDATION_FIX = {
    "karpenter.sh/v1": f"v1: set disruption.consolidateAfter to {MIN_CONSOLIDATE_AFTER_SECONDS // 60}m or more (or "
                       'consolidationPolicy: WhenEmpty), or add a disruption budget nodes: "0" outside a maintenance schedule',
    "karpenter.sh/v1beta1": "v1beta1 (which refuses consolidateAfter with WhenUnderutilized): set consolidationPolicy: WhenEmpty "
                            f"with consolidateAfter: {MIN_CONSOLIDATE_AFTER_SECONDS // 60}m, or add a disruption budget "
                            'nodes: "0" outside a maintenance schedule, or move the pool to karpenter.sh/v1',
}
_KIND = re.compile(r"(?m)^kind:\s*NodePool\s*$")


def holds_node_pool(path: Path) -> bool:
    try:
        return bool(_KIND.search(path.read_text(encoding="utf-8", errors="replace")))
    except OSError:
        return False


def load_node_pools(path: Path) -> list[Resource]:
    import yaml

    from toolkit.check.loader import Resource

    try:
        docs = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise ToolkitError(f"{path} does not exist", hint="pass the YAML files of your Karpenter NodePools") from None
    except yaml.YAMLError as exc:
        raise ToolkitError(f"{path} is not valid YAML: {exc}", hint="fix the YAML syntax (kubectl apply --dry-run=client -f FILE shows where)") from None
    out = []
    for doc in docs:
        if isinstance(doc, dict) and doc.get("kind") == "NodePool" and str(doc.get("apiVersion", "")).startswith("karpenter.sh/"):
            name = str((doc.get("metadata") or {}).get("name", "?"))
            out.append(Resource(type=NODE_POOL, name=name, address=f"NodePool/{name}", values=doc, file=str(path),
                                config="karpenter"))
    return out


def _requirements(pool: Resource) -> list[dict]:
    spec = ((pool.values.get("spec") or {}).get("template") or {}).get("spec") or {}
    return [r for r in spec.get("requirements") or [] if isinstance(r, dict)]


def capacity_types(pool: Resource) -> set[str]:
    """The capacity types a NodePool may launch (Karpenter's default: on-demand)."""
    allowed = {"on-demand"}
    for req in _requirements(pool):
        if req.get("key") != KARPENTER_CAPACITY_TYPE:
            continue
        values = {str(v) for v in req.get("values") or []}
        op = req.get("operator")
        if op == "In":
            allowed = values
        elif op == "NotIn":
            allowed = set(CAPACITY_TYPES) - values
        elif op == "Exists":
            allowed = set(CAPACITY_TYPES)
    return allowed


def _pools(graph) -> list[Resource]:
    return graph.of_type(NODE_POOL)


def no_on_demand_fallback(graph) -> Iterator[tuple[Resource, str]]:
    pools = _pools(graph)
    fallback = [p for p in pools if "on-demand" in capacity_types(p)]
    for p in pools:
        kinds = capacity_types(p)
        if kinds == {"spot"} and not fallback:
            yield p, (f"NodePool {p.values['metadata'].get('name')} launches spot only and no NodePool given allows on-demand: "
                      "when spot capacity for its instance types runs out, pods stay pending")


def consolidation_fights_interruptions(graph) -> Iterator[tuple[Resource, str]]:
    for p in _pools(graph):
        if "spot" not in capacity_types(p):
            continue
        disruption = (p.values.get("spec") or {}).get("disruption") or {}
        policy = disruption.get("consolidationPolicy", "WhenEmptyOrUnderutilized")
        if policy not in UNDERUTILIZED:
            continue
        after = disruption.get("consolidateAfter", "0s")
        seconds = None if after == "Never" else duration_seconds(str(after))
        if after == "Never" or (seconds is not None and seconds >= MIN_CONSOLIDATE_AFTER_SECONDS):
            continue
        budgets = disruption.get("budgets")
        if isinstance(budgets, list) and any(str(b.get("nodes", "")).strip() in ("0", "0%") and not b.get("schedule")
                                              for b in budgets if isinstance(b, dict)):
            continue  # consolidation is switched off by a budget
        name = p.values["metadata"].get("name")
        version = str(p.values.get("apiVersion", ""))
        fix = CONSOLIDATION_FIX.get(version, CONSOLIDATION_FIX["karpenter.sh/v1"])
        when = "(v1beta1 allows no consolidateAfter with WhenUnderutilized)" if version == "karpenter.sh/v1beta1" \
            else f"after {after or '0s'}"
        yield p, (f"NodePool {name} may launch spot and consolidates {policy} {when}: Karpenter replaces "
                  "spot nodes on its own schedule on top of the interruptions AWS makes, so pods move twice as often"), "spot", fix


def check_node_pool_files(paths) -> tuple[list[str], list[dict]]:
    """The NodePools in YAML ``paths`` and the Karpenter spot rules' findings on them, for
    ``spotkit k8s check`` (``spotkit check`` runs the same rules with the Terraform ones)."""
    from toolkit.check.loader import ResourceGraph
    from toolkit.check.rules import RULES_BY_ID

    graph = ResourceGraph()
    for path in paths:
        graph.resources.extend(load_node_pools(Path(path)))
    findings = []
    for rule_id in ("SPOT016", "SPOT017"):
        rule = RULES_BY_ID[rule_id]
        for pool, message, *rest in rule.check(graph):
            fix = rest[1] if len(rest) > 1 else rule.fix
            findings.append({"rule_id": rule.id, "severity": rule.severity, "resource": pool.address, "file": pool.file,
                             "message": message, "fix": fix, "help_uri": rule.help_uri})
    return [p.address for p in graph.resources], findings
