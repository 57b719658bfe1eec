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
import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from toolkit.errors import ToolkitError

MAX_HCL_MB_ENV = "SPOTKIT_CHECK_MAX_HCL_MB"
MAX_HCL_MB = 2  # .tf / .tfvars files: parsing HCL takes about 300 bytes of memory per byte of input (measured)
MAX_JSON_MB = 512  # Terraform JSON and plan JSON: about 10 bytes of memory per byte
MEMORY_PER_HCL_BYTE = 300

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


def max_hcl_mb() -> float:
    raw = os.environ.get(MAX_HCL_MB_ENV, "").strip()
    if not raw:
        return MAX_HCL_MB
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise ToolkitError(f"{MAX_HCL_MB_ENV}={raw!r} is not a positive number of megabytes",
                           hint=f"unset {MAX_HCL_MB_ENV} (default {MAX_HCL_MB} MB), or set it to a number such as 16")
    return value


def _shown(path: Path) -> Path:
    """``path`` as the user would type it: relative to the working directory when below it."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve())
    except (ValueError, OSError):
        return path


def read_input(path: Path, hcl: bool) -> str:
    """The text of one input file, read only when it is within the size cap and is UTF-8 text: a huge
    file, a binary or a non-UTF-8 file is a user error naming the file (never a traceback, never
    gigabytes of parse tree). ``hcl``: the file is parsed with the HCL grammar (.tf, .tfvars)."""
    cap_mb = max_hcl_mb() if hcl else MAX_JSON_MB
    size = path.stat().st_size
    path = _shown(path)
    if size > cap_mb * 1024 * 1024:
        mb = size / (1024 * 1024)
        if hcl:
            need_gb = size * MEMORY_PER_HCL_BYTE / 1024 ** 3
            raise ToolkitError(
                f"{path} is {mb:.1f} MB, over the {cap_mb:g} MB spotkit check parses from one HCL file "
                f"(parsing it would take about {need_gb:.1f} GB of memory); check a plan instead "
                "('terraform show -json PLANFILE > plan.json', then 'spotkit check plan.json'), or raise the cap",
                hint=f"{MAX_HCL_MB_ENV}={int(mb) + 1} spotkit check {shlex.quote(str(path.parent))}")
        raise ToolkitError(f"{path} is {mb:.0f} MB, over the {cap_mb} MB spotkit check reads from one JSON file",
                           hint="check the directory of .tf files it was made from instead: spotkit check DIR")
    data = path.read_bytes()
    if b"\x00" in data[:8192]:
        raise ToolkitError(f"{path} is a binary file, not Terraform text: move it out of the directory (Terraform would refuse it too)",
                           hint=f"file {shlex.quote(str(path))}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ToolkitError(f"{path} is not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line}): Terraform reads UTF-8 only; "
                           "convert it (iconv) or move it out of the directory",
                           hint=f"file -i {shlex.quote(str(path))}") from None


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
    from toolkit.check.hcl import HclLoader, root_directories

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
    from toolkit.k8s.karpenter import holds_node_pool

    return holds_node_pool(path)


NODE_POOL = "karpenter_node_pool"  # the resource type of a Karpenter NodePool; its address is NodePool/<name>


def load_node_pools(path: Path) -> list[Resource]:
    """The Karpenter NodePools of a YAML file as resources whose values are the manifests."""
    from toolkit.k8s.karpenter import read_node_pools

    out = []
    for doc in read_node_pools(path):
        name = str((doc.get("metadata") or {}).get("name", "?"))
        out.append(Resource(type=NODE_POOL, name=name, address=f"NodePool/{name}", values=doc, file=str(path),
                            config="karpenter"))
    return out


def load_graph(paths: Iterable[str | Path]) -> ResourceGraph:
    from toolkit.check.hcl import HclLoader

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
