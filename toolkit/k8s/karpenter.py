"""Karpenter NodePools (``karpenter.sh/v1`` and ``v1beta1``) in YAML files: which files hold them, their
manifests, and the capacity types a pool may launch (Karpenter's default where a field is absent).

The spot rules over NodePools (SPOT016/017) live with the other spot rules in ``spotkit.check``, which
reads NodePools through this module; nothing here imports ``spotkit.check``.
"""

from __future__ import annotations

import re
from pathlib import Path

from spotkit.errors import ToolkitError
from spotkit.k8s.manifests import KARPENTER_CAPACITY_TYPE

CAPACITY_TYPES = ("spot", "on-demand", "reserved")
_KIND = re.compile(r"(?m)^kind:\s*NodePool\s*$")


def holds_node_pool(path: Path) -> bool:
    try:
        return bool(_KIND.search(path.read_text(encoding="utf-8", errors="replace")))
    except OSError:
        return False


def read_node_pools(path: Path) -> list[dict]:
    """The NodePool manifests (``kind: NodePool``, ``apiVersion: karpenter.sh/...``) of a YAML file; a
    missing file or invalid YAML is a user error naming the file."""
    import yaml

    try:
        docs = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise ToolkitError(f"{path} does not exist", hint="pass the YAML files of your Karpenter NodePools") from None
    except yaml.YAMLError as exc:
        raise ToolkitError(f"{path} is not valid YAML: {exc}", hint="fix the YAML syntax (kubectl apply --dry-run=client -f FILE shows where)") from None
    return [doc for doc in docs
            if isinstance(doc, dict) and doc.get("kind") == "NodePool" and str(doc.get("apiVersion", "")).startswith("karpenter.sh/")]


def _requirements(pool: dict) -> list[dict]:
    spec = ((pool.get("spec") or {}).get("template") or {}).get("spec") or {}
    return [r for r in spec.get("requirements") or [] if isinstance(r, dict)]


def capacity_types(pool: dict) -> set[str]:
    """The capacity types a NodePool manifest may launch (Karpenter's default: on-demand)."""
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
