"""The resource graph every input becomes, whoever wrote it (Terraform JSON, plan JSON, HCL, NodePools),
and the accessors the rules read it with.

Terraform JSON writes a single nested block as an object and repeated blocks as a list; plan JSON
always uses lists. ``blocks()`` and ``block()`` hide that difference from the rules. References are
``${type.name.attr}`` interpolations inside strings (``references_in``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

NODE_POOL = "karpenter_node_pool"  # the resource type of a Karpenter NodePool; its address is NodePool/<name>
_REF = re.compile(r"(?<![\w.\]])((?:module\.[\w-]+(?:\[[^\]]*\])?\.)*(?:data\.)?aws_[a-z0-9_]+\.[\w-]+)")
_INTERP = re.compile(r"\$\{([^}]*)\}")


@dataclass
class Resource:
    """One managed resource: ``address`` is ``type.name`` (with ``module.x.`` prefixes in plans)."""

    type: str
    name: str
    address: str
    values: dict[str, Any]
    file: str
    refs: set[str] = field(default_factory=set)
    attr_refs: dict[str, set[str]] = field(default_factory=dict)
    comment: Any = None  # the Terraform JSON "//" field, where suppressions may live
    config: str = ""  # the configuration it belongs to: its file for JSON, the root module's directory for HCL
    line: int | None = None
    base: str = ""  # the address without the instance key (``aws_x.y`` for ``aws_x.y["blue"]``): what references name

    def __post_init__(self) -> None:
        self.config = self.config or self.file
        self.base = self.base or self.address

    def refers_to(self, other: "Resource", attr: str | None = None) -> bool:
        pool = self.attr_refs.get(attr, set()) if attr else self.refs
        return other.base in pool

    def get(self, key: str, default: Any = None) -> Any:
        value = self.values.get(key, default)
        return default if value is None else value


def blocks(values: Any, key: str) -> list[dict]:
    """The nested blocks ``key`` of ``values`` as a list, whether written as an object or a list."""
    if not isinstance(values, dict):
        return []
    value = values.get(key)
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    return [i for i in items if isinstance(i, dict)]


def block(values: Any, *path: str) -> dict:
    """The first nested block along ``path`` (``block(v, "mixed_instances_policy", "launch_template")``),
    or an empty dict."""
    current: Any = values
    for key in path:
        found = blocks(current, key)
        if not found:
            return {}
        current = found[0]
    return current


UNKNOWN_BLOCKS = "__unknown_blocks__"  # labels of ``dynamic`` blocks whose collection is not known before apply


def unknown_block(values: Any, *path: str) -> bool:
    """True when the nested block at ``path`` (or a block on the way) comes from a ``dynamic`` block over a
    collection not known before apply: whether it exists, and how often, cannot be told."""
    current: Any = values
    for key in path:
        if isinstance(current, dict) and key in (current.get(UNKNOWN_BLOCKS) or ()):
            return True
        found = blocks(current, key)
        if not found:
            return False
        current = found[0]
    return False


def as_list(value: Any) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def is_unresolved(value: Any) -> bool:
    """True for a Terraform JSON string that is a whole-expression interpolation (its value is not known)."""
    return isinstance(value, str) and value.strip().startswith("${") and value.strip().endswith("}")


def references_in(value: Any) -> set[str]:
    """Resource addresses referenced by the ``${...}`` interpolations inside ``value`` (any depth)."""
    found: set[str] = set()
    if isinstance(value, str):
        for expr in _INTERP.findall(value):
            for ref in _REF.findall(expr):
                found.add(ref)
    elif isinstance(value, dict):
        for k, v in value.items():
            if k != "//":
                found |= references_in(v)
    elif isinstance(value, list):
        for v in value:
            found |= references_in(v)
    return found


@dataclass
class ResourceGraph:
    resources: list[Resource] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    not_inspected: list = field(default_factory=list)  # hcl.NotInspected: modules whose source was not read
    assume_spot: frozenset = frozenset()
    hcl_roots: list[str] = field(default_factory=list)  # root module directories read as HCL
    hcl_files: set[str] = field(default_factory=set)  # files read as parts of HCL modules (.tf and .tf.json)
    yaml_files: list[str] = field(default_factory=list)  # addresses of groups treated as spot (to find what is undecided)

    def of_type(self, *types: str) -> list[Resource]:
        return [r for r in self.resources if r.type in types]

    def by_address(self, address: str) -> Resource | None:
        for r in self.resources:
            if r.address == address:
                return r
        return None

    def resolve(self, source: Resource, attr: str, *types: str) -> list[Resource]:
        """Resources of ``types`` that ``source`` references through attribute ``attr`` (top level or
        nested), in the same configuration (Terraform addresses are unique per configuration only)."""
        pool = source.attr_refs.get(attr, set())
        return [r for r in self.resources if r.config == source.config and r.base in pool and (not types or r.type in types)]

    def same_config(self, source: Resource, *types: str) -> list[Resource]:
        return [r for r in self.resources if r.config == source.config and r.type in types]


def attr_refs_from_values(values: dict) -> dict[str, set[str]]:
    """References under every attribute name on their path: a ref in
    ``load_balancer[0].target_group_arn`` counts for ``load_balancer`` and ``target_group_arn``."""
    out: dict[str, set[str]] = {}

    def walk(v: Any, keys: tuple[str, ...]) -> None:
        if isinstance(v, dict):
            for k, sub in v.items():
                if k != "//":
                    walk(sub, keys + (k,))
        elif isinstance(v, list):
            for item in v:
                walk(item, keys)
        elif isinstance(v, str):
            refs = references_in(v)
            for k in keys:
                out.setdefault(k, set()).update(refs)

    walk(values, ())
    return out
