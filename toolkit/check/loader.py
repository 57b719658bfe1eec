"""Read Terraform configurations into one normalized resource graph, whoever wrote them.

Inputs:
- a synthesized or hand-written Terraform JSON file (``cdk.tf.json``, ``main.tf.json``);
- a directory: every ``*.tf.json`` below it (``cdktf.out`` holds ``stacks/<name>/cdk.tf.json``);
- a plan or state in ``terraform show -json`` format (``planned_values`` / ``values`` with
  ``root_module`` and ``child_modules``).

Terraform JSON writes a single nested block as an object and repeated blocks as a list; plan JSON
always uses lists. ``blocks()`` and ``block()`` hide that difference from the rules.

References: in Terraform JSON they are ``${type.name.attr}`` interpolations inside strings; in plan
JSON computed values are absent, so references come from the ``configuration`` section's
``expressions`` (``references: ["aws_autoscaling_group.this.name", ...]``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from spotkit.check.graph import (NODE_POOL, Resource, ResourceGraph, as_list, attr_refs_from_values, block, blocks,
                                 is_unresolved, references_in, unknown_block)
from spotkit.check.hcl import HclLoader, root_directories
from spotkit.check.inputs import read_input
from spotkit.errors import ToolkitError

# the graph's names stay importable from here, where the loader's users (and tests) have always found them
__all__ = ["Resource", "ResourceGraph", "as_list", "block", "blocks", "is_unresolved", "references_in", "unknown_block",
           "NODE_POOL", "attr_refs_from_values", "read_input", "is_plan_json", "load_file", "expand_paths", "load_graph",
           "load_node_pools"]


def _load_tf_json(doc: dict, file: str) -> Iterator[Resource]:
    section = doc.get("resource") or {}
    # Terraform JSON also allows "resource": [{type: {name: {...}}}, ...]
    sections = section if isinstance(section, list) else [section]
    for sec in sections:
        if not isinstance(sec, dict):
            continue
        for rtype, items in sec.items():
            for entry in as_list(items):
                if not isinstance(entry, dict):
                    continue
                for name, body in entry.items():
                    for values in as_list(body):
                        if not isinstance(values, dict):
                            continue
                        yield Resource(
                            type=rtype, name=name, address=f"{rtype}.{name}", values=values, file=file,
                            refs=references_in(values), attr_refs=attr_refs_from_values(values),
                            comment=values.get("//"),
                        )


def _address_of(ref: str, prefix: str) -> str | None:
    """``aws_lb.web.arn`` -> ``aws_lb.web`` (with the module prefix); None for var./local./data refs."""
    parts = ref.split(".")
    base: list[str] = []
    i = 0
    while i + 1 < len(parts) and parts[i] == "module":
        base += parts[i:i + 2]
        i += 2
    if i + 1 < len(parts) and parts[i].startswith("aws_"):
        name = re.sub(r"\[[^\]]*\]$", "", parts[i + 1])
        return prefix + ".".join(base + [parts[i], name])
    return None


def _config_refs(config_module: dict, prefix: str, out: dict[str, dict[str, set[str]]]) -> None:
    for res in config_module.get("resources") or []:
        attr_refs: dict[str, set[str]] = {}

        def walk(node: Any, keys: tuple[str, ...]) -> None:
            if isinstance(node, dict):
                if isinstance(node.get("references"), list):
                    addrs = {a for a in (_address_of(r, prefix) for r in node["references"]) if a}
                    for k in keys:
                        attr_refs.setdefault(k, set()).update(addrs)
                    return
                for k, sub in node.items():
                    walk(sub, keys + (k,))
            elif isinstance(node, list):
                for item in node:
                    walk(item, keys)

        walk(res.get("expressions") or {}, ())
        out[prefix + res.get("address", "")] = attr_refs
    for name, call in (config_module.get("module_calls") or {}).items():
        _config_refs(call.get("module") or {}, f"{prefix}module.{name}.", out)


def _load_plan_json(doc: dict, file: str) -> Iterator[Resource]:
    root = (doc.get("planned_values") or doc.get("values") or {}).get("root_module") or {}
    config_refs: dict[str, dict[str, set[str]]] = {}
    _config_refs((doc.get("configuration") or {}).get("root_module") or {}, "", config_refs)

    def walk(module: dict) -> Iterator[Resource]:
        for res in module.get("resources") or []:
            if res.get("mode", "managed") != "managed":
                continue
            address = res.get("address") or f"{res.get('type')}.{res.get('name')}"
            # config addresses have no index: "aws_x.y[0]" -> "aws_x.y" (what references name)
            config_address = re.sub(r"\[[^\]]*\]", "", address)
            attr_refs = {k: set(v) for k, v in config_refs.get(config_address, {}).items()}
            values = res.get("values") or {}
            refs = set().union(*attr_refs.values()) if attr_refs else set()
            yield Resource(type=res.get("type", ""), name=res.get("name", ""), address=address,
                           values=values, file=file, refs=refs, attr_refs=attr_refs, base=config_address)
        for child in module.get("child_modules") or []:
            yield from walk(child)

    yield from walk(root)


def is_plan_json(doc: dict) -> bool:
    return "format_version" in doc and ("planned_values" in doc or "values" in doc or "resource_changes" in doc)


def load_file(path: Path) -> tuple[list[Resource], str]:
    """Resources of one file and its kind ("tf_json" or "plan")."""
    try:
        doc = json.loads(read_input(path, hcl=False))
    except FileNotFoundError:
        raise ToolkitError(f"{path} does not exist", hint="pass a cdk.tf.json, a directory of them, or a 'terraform show -json' plan") from None
    except json.JSONDecodeError as exc:
        raise ToolkitError(f"{path} is not valid JSON: {exc}",
                           hint="pass Terraform JSON (*.tf.json) or the output of 'terraform show -json PLANFILE'") from exc
    if not isinstance(doc, dict):
        raise ToolkitError(f"{path} is not a Terraform JSON document (top level is a {type(doc).__name__})")
    if is_plan_json(doc):
        return list(_load_plan_json(doc, str(path))), "plan"
    return list(_load_tf_json(doc, str(path))), "tf_json"


YAML_SUFFIXES = (".yaml", ".yml")


@dataclass
class Inputs:
    """What the paths hold: Terraform JSON / plan files, HCL root module directories, YAML files."""
    json_files: list[Path] = field(default_factory=list)
    hcl_roots: list[Path] = field(default_factory=list)
    yaml_files: list[Path] = field(default_factory=list)
    loader: Any = None  # the hcl.HclLoader that parsed the HCL files (each file is parsed once)


def _is_hcl_file(p: Path) -> bool:
    return p.suffix == ".tf"


def expand_paths(paths: Iterable[str | Path]) -> Inputs:
    """Directories holding ``.tf`` files are HCL configurations (each directory that no other calls as a
    local module is a root; ``.tf.json`` files beside ``.tf`` files belong to it); other ``*.tf.json``
    files are Terraform JSON configurations of their own (``cdktf.out``); a ``.tf`` file stands for its
    directory; YAML files (Karpenter NodePools) are read when named or when a directory holds NodePools."""
    loader = HclLoader()
    out = Inputs(loader=loader)
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            roots = root_directories(p, loader)
            hcl_dirs = {q.parent.resolve() for q in p.rglob("*.tf") if ".terraform" not in q.parts}
            found = sorted(q for q in p.rglob("*.json") if q.name.endswith(".tf.json") and ".terraform" not in q.parts
                           and q.parent.resolve() not in hcl_dirs)
            yamls = sorted(q for q in p.rglob("*") if q.suffix in YAML_SUFFIXES and q.is_file()
                           and ".terraform" not in q.parts and not any(part.startswith(".") for part in q.relative_to(p).parts)
                           and _holds_node_pool(q))
            if not roots and not found and not yamls:
                raise ToolkitError(f"{p} holds no .tf or *.tf.json file (nor a Karpenter NodePool)",
                                   hint="pass a directory of Terraform (.tf) files, a cdk.tf.json, a plan JSON or NodePool YAML; for spotkit stacks run 'spotkit synth' first")
            out.hcl_roots.extend(roots)
            out.json_files.extend(found)
            out.yaml_files.extend(yamls)
        elif p.exists():
            if _is_hcl_file(p):
                out.hcl_roots.append(p.resolve().parent)
            elif p.suffix in YAML_SUFFIXES:
                out.yaml_files.append(p)
            else:
                out.json_files.append(p)
        else:
            raise ToolkitError(f"{p} does not exist", hint="pass a directory of .tf files, a cdk.tf.json or a plan JSON (for spotkit stacks, 'spotkit synth' writes cdktf.out/stacks/<name>/cdk.tf.json)")
    out.hcl_roots = list(dict.fromkeys(out.hcl_roots))
    return out


def _holds_node_pool(path: Path) -> bool:
    from spotkit.k8s.karpenter import holds_node_pool

    return holds_node_pool(path)


def load_node_pools(path: Path) -> list[Resource]:
    """The Karpenter NodePools of a YAML file as resources whose values are the manifests."""
    from spotkit.k8s.karpenter import read_node_pools

    out = []
    for doc in read_node_pools(path):
        name = str((doc.get("metadata") or {}).get("name", "?"))
        out.append(Resource(type=NODE_POOL, name=name, address=f"NodePool/{name}", values=doc, file=str(path),
                            config="karpenter"))
    return out


def load_graph(paths: Iterable[str | Path]) -> ResourceGraph:
    inputs = expand_paths(paths)
    graph = ResourceGraph()
    plan_addresses: set[str] = set()
    for f in inputs.json_files:
        resources, kind = load_file(f)
        graph.resources.extend(resources)
        graph.files.append(str(f))
        if kind == "plan":
            plan_addresses |= {r.address for r in resources}
    loader = inputs.loader or HclLoader()
    for root in inputs.hcl_roots:
        resources, not_inspected, files = loader.load_root(root)
        # a plan JSON given alongside covers what HCL alone cannot: registry modules, and its values win
        graph.resources.extend(r for r in resources if r.address not in plan_addresses)
        graph.not_inspected.extend(m for m in not_inspected
                                   if not any(a.startswith(m.module + ".") for a in plan_addresses))
        graph.files.extend(files)
        graph.hcl_files.update(files)
        graph.hcl_roots.append(str(root))
    for f in inputs.yaml_files:
        if f.exists():
            read_input(f, hcl=False)  # a binary, non-UTF-8 or oversized YAML file is a user error, not a traceback
        graph.resources.extend(load_node_pools(f))
        graph.files.append(str(f))
        graph.yaml_files.append(str(f))
    return graph
