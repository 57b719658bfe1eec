"""Load HCL modules: a directory is one module instance (its variables, locals, outputs, resources);
local module calls are followed, with Terraform's addresses; other sources are listed as not inspected."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from spotkit.check.graph import Resource, attr_refs_from_values, references_in
from spotkit.check.hcl.constraints import apply_type, parse_type
from spotkit.check.hcl.evaluate import Scope, evaluate_body, instance_key, instance_scopes
from spotkit.check.hcl.parse import NO_DEFAULT, ParsedFile, parse_file, parse_tfvars
from spotkit.check.hcl.values import Expr, Template, Unknown, unknown
from spotkit.errors import ToolkitError

MODULE_META = {"source", "version", "count", "for_each", "depends_on", "providers"}
MAX_MODULE_DEPTH = 16


@dataclass
class NotInspected:
    """A module call whose source is not read (registry, git, S3...): reported with its source and version."""

    module: str
    source: str
    version: str | None
    file: str

    def to_dict(self) -> dict:
        return {"module": self.module, "source": self.source, "version": self.version, "file": self.file}


class Module:
    """One instance of a module directory: its variables, locals, outputs, resources and calls."""

    def __init__(self, loader: "HclLoader", directory: Path, prefix: str, inputs: dict[str, Any] | None,
                 depth: int = 0, config: str | None = None):
        self.loader, self.dir, self.prefix, self.depth = loader, directory, prefix, depth
        self.config = config or str(directory)
        self.files = loader.parsed(directory)
        self.inputs = inputs if inputs is not None else loader.tfvars(directory)
        self.scope = Scope(self)
        self._locals: dict[str, Any] = {}
        self._evaluating: set[str] = set()
        self._children: dict[str, tuple[str, list[tuple[Any, Module]]] | None] = {}
        self._outputs: dict[str, Any] | None = None
        self.raw_variables: dict[str, Any] = {}
        self.var_types: dict[str, str] = {}
        self._variables: dict[str, Any] = {}
        self.not_nullable: set[str] = set()
        self.raw_locals: dict[str, Any] = {}
        self.raw_outputs: dict[str, Any] = {}
        self.calls: dict[str, tuple[dict, ParsedFile, int | None]] = {}
        for f in self.files:
            self.raw_variables.update(f.variables)
            self.var_types.update(f.var_types)
            self.not_nullable |= f.not_nullable
            self.raw_locals.update(f.locals)
            self.raw_outputs.update(f.outputs)
            for name, body, line in f.modules:
                self.calls[name] = (body, f, line)

    def variable(self, name: str) -> Any:
        """The variable's value, converted to its type constraint as Terraform does: ``optional(type,
        default)`` attributes that are absent or null take their default, at any depth (in the given
        value and in the variable's own default)."""
        if name in self._variables:
            return self._variables[name]
        if name in self.inputs and not (self.inputs[name] is None and name in self.not_nullable):
            value = self.inputs[name]  # (null given to a nullable = false variable: its default, as in Terraform)
        else:
            raw = self.raw_variables.get(name, NO_DEFAULT)
            if raw is NO_DEFAULT:
                return unknown(f"var.{name}")
            value = Scope(self).evaluate(raw)
        if name in self.var_types:
            value = apply_type(value, self.type_of(name))
        self._variables[name] = value
        return value

    def type_of(self, name: str) -> Any:
        """The variable's parsed type constraint, once per module directory (defaults are constants)."""
        key = (self.dir, name)
        if key not in self.loader.types:
            self.loader.types[key] = parse_type(self.scope, self.var_types[name])
        return self.loader.types[key]

    def local(self, name: str) -> Any:
        if name in self._locals:
            return self._locals[name]
        if name not in self.raw_locals or name in self._evaluating:
            return unknown(f"local.{name}")
        self._evaluating.add(name)
        try:
            value = self.scope.evaluate(self.raw_locals[name])
        finally:
            self._evaluating.discard(name)
        self._locals[name] = value
        return value

    def instances_of(self, name: str) -> tuple[str, list[tuple[Any, "Module"]]] | None:
        """(``single`` | ``count`` | ``for_each``, [(key, module instance)]) of a local module call; None
        for other sources. Instances are addressed as Terraform does: ``module.m[0].``, ``module.m["a"].``
        (``module.m.`` when the keys are unknown: one instance whose ``each``/``count`` values are unknown)."""
        if name in self._children:
            return self._children[name]
        self._children[name] = None  # guards a cycle
        body, f, _line = self.calls.get(name, ({}, None, None))
        source = body.get("source")
        if f is None or not isinstance(source, str) or not source.startswith(("./", "../")) or self.depth >= MAX_MODULE_DEPTH:
            return None
        directory = (f.path.parent / source).resolve()
        if not directory.is_dir():
            raise ToolkitError(f"module {self.prefix}module.{name} in {f.path}: source {source!r} is not a directory",
                               hint=f"fix the source path (relative to {f.path.parent}) so it names a directory of .tf files")
        kind = "for_each" if "for_each" in body else ("count" if "count" in body else "single")
        instances: list[tuple[Any, Module]] = []
        for scope in instance_scopes(self.scope, body):
            key = scope.iters["each"]["key"] if kind == "for_each" else (scope.iters["count"]["index"] if kind == "count" else None)
            suffix = "" if kind == "single" or isinstance(key, Unknown) else (f"[{key}]" if kind == "count" else f"[{json.dumps(str(key))}]")
            inputs = {k: scope.evaluate(v) for k, v in body.items() if k not in MODULE_META}
            instances.append((key, Module(self.loader, directory, f"{self.prefix}module.{name}{suffix}.", inputs,
                                          self.depth + 1, config=self.config)))
        self._children[name] = (kind, instances)
        return self._children[name]

    def all_modules(self) -> Iterator["Module"]:
        yield self
        for got in self._children.values():
            for _key, child in (got[1] if got else []):
                yield from child.all_modules()

    def outputs(self) -> dict[str, Any]:
        if self._outputs is None:
            self._outputs = {}  # a reference back into this module while computing: unknown
            self._outputs = {name: self.scope.evaluate(raw) for name, raw in self.raw_outputs.items()}
        return self._outputs

    def module_object(self, name: str) -> Any:
        """What ``module.<name>`` is: its outputs as an object (a list / map of them for count / for_each)."""
        got = self.instances_of(name)
        if not got or not got[1]:
            return unknown(f"{self.prefix}module.{name}")
        kind, instances = got
        if kind == "single":
            return instances[0][1].outputs()
        if any(isinstance(key, Unknown) for key, _ in instances):
            return unknown(f"{self.prefix}module.{name}")
        if kind == "count":
            return [m.outputs() for _, m in instances]
        return {str(key): m.outputs() for key, m in instances}

    def resources(self, not_inspected: list[NotInspected]) -> Iterator[Resource]:
        for f in self.files:
            for rtype, name, body, line in f.resources:
                if rtype.startswith("data."):
                    continue
                base = f"{self.prefix}{rtype}.{name}"
                for scope in instance_scopes(self.scope, body):
                    values = evaluate_body(scope, body)
                    yield Resource(type=rtype, name=name, address=base + instance_key(scope, body), values=values,
                                   file=str(f.path), refs=references_in(values), attr_refs=attr_refs_from_values(values),
                                   comment=f.comments.get((rtype, name)), config=self.config, line=line, base=base)
        for name, (body, f, line) in self.calls.items():
            source = body.get("source")
            if isinstance(source, str) and source.startswith(("./", "../")):
                got = self.instances_of(name)
                for _key, child in (got[1] if got else []):
                    yield from child.resources(not_inspected)
            else:
                version = body.get("version")
                not_inspected.append(NotInspected(f"{self.prefix}module.{name}", str(source),
                                                  version if isinstance(version, str) else None, str(f.path)))


class HclLoader:
    """Parses each file once, whichever module instance reads it."""

    def __init__(self) -> None:
        self._parsed: dict[Path, list[ParsedFile]] = {}
        self.types: dict[tuple[Path, str], Any] = {}  # (module directory, variable) -> parsed type constraint

    def parsed(self, directory: Path) -> list[ParsedFile]:
        directory = directory.resolve()
        if directory not in self._parsed:
            files = sorted(p for p in directory.iterdir() if p.is_file() and (p.suffix == ".tf" or p.name.endswith(".tf.json")))
            self._parsed[directory] = [parse_file(p) for p in files]
            for parsed in self._parsed[directory]:
                parsed.path = display_path(parsed.path)
        return self._parsed[directory]

    def tfvars(self, directory: Path) -> dict[str, Any]:
        files = [directory / "terraform.tfvars", directory / "terraform.tfvars.json"]
        files += sorted(directory.glob("*.auto.tfvars")) + sorted(directory.glob("*.auto.tfvars.json"))
        raw: dict[str, Any] = {}
        for p in files:
            if p.is_file():
                raw.update(parse_tfvars(p))
        return {k: _literal_only(v) for k, v in raw.items()}  # tfvars hold literals only

    def local_sources(self, directory: Path) -> set[Path]:
        """Directories this module calls as local modules."""
        out = set()
        for f in self.parsed(directory):
            for _name, body, _line in f.modules:
                source = body.get("source")
                if isinstance(source, str) and source.startswith(("./", "../")):
                    out.add((f.path.parent / source).resolve())
        return out

    def load_root(self, directory: Path) -> tuple[list[Resource], list[NotInspected], list[str]]:
        module = Module(self, directory, "", None, config=str(display_path(directory)))
        not_inspected: list[NotInspected] = []
        resources = list(module.resources(not_inspected))
        files = list(dict.fromkeys(str(f.path) for m in module.all_modules() for f in m.files))
        return resources, not_inspected, files


def display_path(path: Path) -> Path:
    """``path`` relative to the working directory when it is below it (as users wrote it), else absolute."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return path.resolve()


def _literal_only(raw: Any) -> Any:
    if isinstance(raw, (Expr, Template)):
        return unknown(raw.text)
    if isinstance(raw, list):
        return [_literal_only(v) for v in raw]
    if isinstance(raw, dict):
        return {k: _literal_only(v) for k, v in raw.items()}
    return raw


def root_directories(directory: Path, loader: HclLoader) -> list[Path]:
    """Directories under ``directory`` holding ``.tf`` files that no other of them calls as a local
    module (``.terraform`` excluded): each is a root module."""
    dirs = sorted({p.parent.resolve() for p in directory.rglob("*.tf") if ".terraform" not in p.parts})
    called: set[Path] = set()
    for d in dirs:
        called |= loader.local_sources(d)
    return [d for d in dirs if d not in called]
