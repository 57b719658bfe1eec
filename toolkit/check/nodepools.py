"""``spotkit k8s check``'s NodePool part: the Karpenter spot rules (SPOT016/017) over NodePool YAML files
alone. ``spotkit check`` runs the same rules beside the Terraform ones."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from spotkit.check.engine import hits
from spotkit.check.graph import ResourceGraph
from spotkit.check.loader import load_node_pools
from spotkit.check.rules import RULES_BY_ID

KARPENTER_RULES = ("SPOT016", "SPOT017")


def check_node_pool_files(paths: Iterable[str | Path]) -> tuple[list[str], list[dict]]:
    """(addresses of the NodePools in YAML ``paths``, the Karpenter spot rules' findings on them as dicts:
    rule_id, severity, resource, file, message, fix, help_uri)."""
    graph = ResourceGraph()
    for path in paths:
        graph.resources.extend(load_node_pools(Path(path)))
    findings = []
    for rule_id in KARPENTER_RULES:
        rule = RULES_BY_ID[rule_id]
        for pool, message, _category, _decided, fix in hits(rule, graph):
            findings.append({"rule_id": rule.id, "severity": rule.severity, "resource": pool.address, "file": pool.file,
                             "message": message, "fix": fix, "help_uri": rule.help_uri})
    return [p.address for p in graph.resources], findings
