"""Read Terraform HCL (``*.tf``, with any ``*.tf.json`` beside them) into the resource graph.

A directory is one Terraform module, as Terraform sees it: every ``.tf`` and ``.tf.json`` file in it,
references across files included. Values are evaluated as far as they can be known before a plan:

- literals, lists, objects, string templates;
- ``var.x`` (the variable's default, ``terraform.tfvars`` / ``*.auto.tfvars`` in the root module, or
  the module call's argument; null to a ``nullable = false`` variable gives its default), ``local.x``,
  ``module.m.output`` of a local module;
- ``count`` / ``for_each`` (``count.index``, ``each.key``, ``each.value``) and ``dynamic`` blocks
  (``<iterator>.key`` / ``.value``), when the collection is known;
- conditionals, ``==`` / ``!=`` / ``&&`` / ``||`` / ``!``, ``for`` expressions and a few pure functions
  (``lookup``, ``merge``, ``concat``, ``try``, ``can``, ``coalesce``, ``length``, ``jsonencode``...) on
  known values; an attribute a known object does not set is null (``optional()`` attributes).

Anything else (other functions, arithmetic, splats, data sources, an attribute computed at apply
time) is *unknown*: it is kept as a ``${...}`` string, the form the rules already treat as
"cannot tell", so a rule never guesses. References to resources stay in that text
(``${aws_launch_template.x.id}``, with ``module.m.`` in front inside a module), which is how the
rules follow references, exactly as in Terraform JSON.

Local modules (``source = "./..."`` or ``"../..."``) are followed: their resources get addresses
``module.m.aws_...``. Other sources (registry, git, S3...) are not downloaded: they are listed as
not inspected, with their source and version.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from toolkit.check.loader import UNKNOWN_BLOCKS, Resource, _attr_refs_from_values, read_input, references_in
from toolkit.errors import ToolkitError

META_ARGS = {"count", "for_each", "depends_on", "provider", "lifecycle", "provisioner", "connection"}
MODULE_META = {"source", "version", "count", "for_each", "depends_on", "providers"}
MAX_MODULE_DEPTH = 16
_TRAVERSAL = re.compile(r'^[A-Za-z_][\w-]*(?:\.[A-Za-z_][\w-]*|\.\d+|\[\s*(?:\d+|"[^"\\]*")\s*\])*$')
_STEP = re.compile(r'\.([A-Za-z_][\w-]*|\d+)|\[\s*(\d+|"[^"\\]*")\s*\]')
_RESOURCE_REF = re.compile(r"(?<![\w.\"])((?:data\.)?aws_[a-z0-9_]+\.[A-Za-z_][\w-]*)")
_ESCAPE = re.compile(r'\\(["\\nrt])')
_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "r": "\r", "t": "\t"}


class Unknown(str):
    """A value that cannot be known before apply: its text is the ``${...}`` expression."""


def unknown(expr: str) -> Unknown:
    return Unknown("${" + expr + "}")


@dataclass
class Expr:
    """An HCL expression that is not a literal (``var.x``, ``aws_lb.web.arn``, ``length(x)``)."""
    text: str


@dataclass
class Template:
    """A string with ``${...}`` interpolations or ``%{...}`` directives."""
    text: str


@dataclass
class NotInspected:
    module: str
    source: str
    version: str | None
    file: str

    def to_dict(self) -> dict:
        return {"module": self.module, "source": self.source, "version": self.version, "file": self.file}


# --- raw values: what the files say, before evaluation ---------------------------------------------

def _unquote(text: str) -> str:
    return _ESCAPE.sub(lambda m: _ESCAPES[m.group(1)], text)


def _raw_from_json(value: Any) -> Any:
    """Terraform JSON syntax: every string is a template."""
    if isinstance(value, str):
        if "${" not in value and "%{" not in value:
            return value
        stripped = value.strip()
        if stripped.startswith("${") and stripped.endswith("}") and _closing(stripped, 2) == len(stripped) - 1:
            return Expr(stripped[2:-1].strip())
        return Template(value)
    if isinstance(value, list):
        return [_raw_from_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _raw_from_json(v) for k, v in value.items()}
    return value


def _key(k: str) -> str:
    return k[1:-1] if len(k) >= 2 and k.startswith('"') and k.endswith('"') else k


def _closing(text: str, start: int) -> int:
    """Index of the ``}`` that closes the ``${`` / ``%{`` opened just before ``start`` (-1 if none)."""
    depth, i, quote = 1, start, False
    while i < len(text):
        c = text[i]
        if c == "\\" and quote:
            i += 2
            continue
        if c == '"':
            quote = not quote
        elif not quote and c == "{":
            depth += 1
        elif not quote and c == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


# --- a parsed file ----------------------------------------------------------------------------------

@dataclass
class ParsedFile:
    path: Path
    resources: list[tuple[str, str, dict, int | None]] = field(default_factory=list)  # type, name, body, line
    variables: dict[str, Any] = field(default_factory=dict)
    locals: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    modules: list[tuple[str, dict, int | None]] = field(default_factory=list)
    comments: dict[tuple[str, str], Any] = field(default_factory=dict)  # Terraform JSON "//" fields
    not_nullable: set[str] = field(default_factory=set)  # variables with nullable = false
    var_types: dict[str, str] = field(default_factory=dict)  # variable name -> its type constraint's source text


def _labelled(section: Any) -> Iterator[tuple[str, Any]]:
    """``[{'"name"': body}, ...]`` (HCL) or ``{name: body}`` (JSON) -> (name, body) pairs."""
    for item in section if isinstance(section, list) else [section]:
        if isinstance(item, dict):
            for k, v in item.items():
                if k != "__is_block__":
                    for body in v if isinstance(v, list) else [v]:
                        yield _key(k), body


def _line_of(text: str, kind: str, *labels: str) -> int | None:
    pattern = re.escape(kind) + "".join(r'\s+"?' + re.escape(label) + '"?' for label in labels) + r"\s*\{"
    m = re.search(r"(?m)^\s*" + pattern, text)
    return text.count("\n", 0, m.start()) + 1 if m else None


def parse_file(path: Path) -> ParsedFile:
    text = read_input(path, hcl=not path.name.endswith(".tf.json"))
    out = ParsedFile(path)
    if path.name.endswith(".tf.json"):
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ToolkitError(f"{path} is not valid JSON: {exc}", hint=f"fix the JSON syntax, or check it with: terraform -chdir={path.parent} validate") from exc
        if not isinstance(doc, dict):
            raise ToolkitError(f"{path} is not a Terraform JSON document (top level is a {type(doc).__name__})")
        convert, line = _raw_from_json, (lambda *a: None)
    else:
        from lark.exceptions import LarkError

        try:
            doc = _tree_doc(text)
        except (LarkError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ToolkitError(f"{path} is not valid HCL: {first}",
                               hint=f"terraform -chdir={path.parent} validate") from None
        convert, line = (lambda raw: raw), (lambda *labels: _line_of(text, *labels))
        for key, texts in skip_comments(text, doc.pop(_SPANS, [])).items():
            out.comments[key] = {"spotkit:skip-check": texts}
    for rtype, bodies in _labelled(doc.get("resource") or []):
        for name, body in _labelled(bodies):
            if isinstance(body, dict):
                if "//" in body:
                    out.comments[(rtype, name)] = body["//"]
                out.resources.append((rtype, name, convert({k: v for k, v in body.items() if k != "//"}), line("resource", rtype, name)))
    for name, body in _labelled(doc.get("variable") or []):
        if isinstance(body, dict):
            out.variables[name] = convert(body.get("default")) if "default" in body else _NO_DEFAULT
            if body.get("nullable") is False:
                out.not_nullable.add(name)
            typ = body.get("type")
            if isinstance(typ, (Expr, str)) and not isinstance(typ, Unknown):
                out.var_types[name] = typ.text if isinstance(typ, Expr) else typ
    for body in doc.get("locals") or [] if isinstance(doc.get("locals"), list) else [doc.get("locals") or {}]:
        if isinstance(body, dict):
            out.locals.update({_key(k): convert(v) for k, v in body.items() if k not in ("__is_block__", "//")})
    for name, body in _labelled(doc.get("output") or []):
        if isinstance(body, dict):
            out.outputs[name] = convert(body.get("value"))
    for name, body in _labelled(doc.get("module") or []):
        if isinstance(body, dict):
            out.modules.append((name, convert(body), line("module", name)))
    return out


_NO_DEFAULT = object()


def parse_tfvars(path: Path) -> dict[str, Any]:
    if path.name.endswith(".json"):
        try:
            doc = json.loads(read_input(path, hcl=False))
        except json.JSONDecodeError as exc:
            raise ToolkitError(f"{path} is not valid JSON: {exc}") from exc
        return {k: _raw_from_json(v) for k, v in doc.items()} if isinstance(doc, dict) else {}
    from lark.exceptions import LarkError

    try:
        doc = _tree_doc(read_input(path, hcl=True))
        doc.pop(_SPANS, None)
        return doc
    except (LarkError, ValueError) as exc:
        raise ToolkitError(f"{path} is not valid HCL: {str(exc).strip().splitlines()[0]}",
                           hint="a .tfvars file holds name = value lines") from None


# --- evaluation -------------------------------------------------------------------------------------

class Scope:
    """What names mean inside one module instance (and one resource instance / dynamic block)."""

    def __init__(self, module: "Module", iters: dict[str, Any] | None = None):
        self.module = module
        self.iters = iters or {}

    def child(self, **iters: Any) -> "Scope":
        return Scope(self.module, {**self.iters, **iters})

    def prefix_refs(self, text: str) -> str:
        prefix = self.module.prefix
        return _RESOURCE_REF.sub(lambda m: prefix + m.group(1), text) if prefix else text

    def unknown(self, text: str) -> Unknown:
        return unknown(self.prefix_refs(text))

    def evaluate(self, raw: Any) -> Any:
        if isinstance(raw, Expr):
            return self.expression(raw.text)
        if isinstance(raw, Template):
            return self.template(raw.text)
        if isinstance(raw, list):
            return [self.evaluate(v) for v in raw]
        if isinstance(raw, dict):
            return {k: self.evaluate(v) for k, v in raw.items()}
        return raw

    def template(self, text: str) -> Any:
        if "%{" in text:
            return self.unknown(json.dumps(text))  # directives: not evaluated
        parts: list[Any] = []
        i = 0
        while i < len(text):
            start = text.find("${", i)
            if start < 0:
                parts.append(text[i:])
                break
            if start > 0 and text[start - 1] == "$":  # "$${" is a literal "${"
                parts.append(text[i:start - 1] + "${")
                i = start + 2
                continue
            end = _closing(text, start + 2)
            if end < 0:
                return self.unknown(json.dumps(text))
            if start > i:
                parts.append(text[i:start])
            parts.append(self.expression(text[start + 2:end].strip()))
            i = end + 1
        parts = [_unquote(p) if isinstance(p, str) and not isinstance(p, Unknown) else p for p in parts]
        if len(parts) == 1 and not isinstance(parts[0], str):
            return parts[0]  # "${var.n}" keeps the variable's type, as in Terraform
        if len(parts) == 1:
            return parts[0]
        if all(isinstance(p, (str, int, float, bool)) for p in parts):
            return "".join(_scalar_text(p) for p in parts)
        return Unknown("".join(p if isinstance(p, str) else "${" + json.dumps(p) + "}" for p in parts))

    def expression(self, text: str) -> Any:
        text = text.strip()
        if text in ("true", "false"):
            return text == "true"
        if text == "null":
            return None
        if re.fullmatch(r"-?\d+", text):
            return int(text)
        if re.fullmatch(r"-?\d+\.\d+", text):
            return float(text)
        if len(text) >= 2 and text.startswith('"') and text.endswith('"') and _closing("{" + text, 1) == -1:
            inner = text[1:-1]
            return self.template(inner) if "${" in inner else _unquote(inner)
        if text.startswith("(") and text.endswith(")") and _closing_paren(text) == len(text) - 1:
            return self.expression(text[1:-1])
        if not _TRAVERSAL.match(text):
            return evaluate_expression(self, text)
        head_match = re.match(r"[A-Za-z_][\w-]*", text)
        head, steps = head_match.group(0), _steps(text[head_match.end():])
        if head == "var" and steps:
            value = self.module.variable(steps[0])
            return self._walk(value, steps[1:], text)
        if head == "local" and steps:
            value = self.module.local(steps[0])
            return self._walk(value, steps[1:], text)
        if head == "module" and steps:
            value = self.module.module_object(str(steps[0]))
            return self._walk(value, steps[1:], text)
        if head in self.iters:
            return self._walk(self.iters[head], steps, text)
        return self.unknown(text)

    def _walk(self, value: Any, steps: list, text: str) -> Any:
        for step in steps:
            if isinstance(value, Unknown):
                return self.unknown(text) if not _RESOURCE_REF.search(value) else Unknown(value[:-1] + _steps_text([step]) + "}")
            if isinstance(value, dict) and str(step) in value:
                value = value[str(step)]
            elif isinstance(value, dict) and isinstance(step, str):
                value = None  # an attribute the object does not set: null, as an optional() attribute
            elif isinstance(value, list) and isinstance(step, int) and 0 <= step < len(value):
                value = value[step]
            else:
                return self.unknown(text)
        return value


def _closing_paren(text: str) -> int:
    depth = 0
    for i, c in enumerate(text):
        depth += c == "("
        depth -= c == ")"
        if depth == 0:
            return i
    return -1


def _steps(text: str) -> list:
    out: list = []
    for m in _STEP.finditer(text):
        token = m.group(1) if m.group(1) is not None else m.group(2)
        if token.startswith('"'):
            out.append(token[1:-1])
        elif token.isdigit():
            out.append(int(token))
        else:
            out.append(token)
    return out


def _steps_text(steps: list) -> str:
    return "".join(f"[{s}]" if isinstance(s, int) else f".{s}" for s in steps)


def _scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _instances(scope: Scope, body: dict) -> list[Scope]:
    """One scope per instance of a block with ``count`` / ``for_each`` (one with unknown keys when the
    collection is unknown; none for ``count = 0`` or an empty collection)."""
    if "count" in body:
        n = scope.evaluate(body["count"])
        if isinstance(n, bool) or not isinstance(n, (int, float)):
            return [scope.child(count={"index": unknown("count.index")})]
        return [scope.child(count={"index": i}) for i in range(int(n))]
    if "for_each" in body:
        coll = scope.evaluate(body["for_each"])
        if isinstance(coll, dict) and not isinstance(coll, Unknown):
            return [scope.child(each={"key": k, "value": v}) for k, v in coll.items()]
        if isinstance(coll, list) and all(isinstance(v, str) and not isinstance(v, Unknown) for v in coll):
            return [scope.child(each={"key": v, "value": v}) for v in dict.fromkeys(coll)]
        return [scope.child(each={"key": unknown("each.key"), "value": unknown("each.value")})]
    return [scope]


def instance_key(scope: Scope, body: dict) -> str:
    """``[0]`` / ``["blue"]``: the instance key Terraform puts in the address of a resource with
    ``count`` / ``for_each`` ("" without them, or when the key is not known before apply)."""
    if "count" in body:
        index = scope.iters.get("count", {}).get("index")
        return "" if isinstance(index, Unknown) or index is None else f"[{index}]"
    if "for_each" in body:
        key = scope.iters.get("each", {}).get("key")
        return "" if isinstance(key, Unknown) or key is None else f"[{json.dumps(str(key))}]"
    return ""


def evaluate_body(scope: Scope, body: dict, top: bool = True) -> dict:
    """A resource (or nested block) body: attributes evaluated, nested blocks as lists of dicts,
    ``dynamic`` blocks expanded, meta-arguments dropped."""
    out: dict[str, Any] = {}
    for key, raw in body.items():
        if top and key in META_ARGS:
            continue
        if key == "dynamic":
            for label, dyn in _labelled(raw):
                if isinstance(dyn, dict):
                    generated = _dynamic(scope, label, dyn)
                    if generated is None:  # not known before apply: no block, and the rules are told
                        out.setdefault(UNKNOWN_BLOCKS, []).append(label)
                    elif generated:
                        out.setdefault(label, []).extend(generated)
            continue
        if isinstance(raw, list) and raw and all(isinstance(b, dict) for b in raw):
            # (extend: a dynamic block of the same type written before these blocks keeps its blocks)
            out.setdefault(key, []).extend(evaluate_body(scope, b, top=False) for b in raw)
        elif isinstance(raw, dict):
            one = evaluate_body(scope, raw, top=False)
            if isinstance(out.get(key), list):
                out[key].append(one)
            else:
                out[key] = one
        else:
            out[key] = scope.evaluate(raw)
    return out


def _dynamic(scope: Scope, label: str, dyn: dict) -> list[dict] | None:
    """The blocks a ``dynamic`` block generates: none over null or an empty collection (as in
    Terraform), None when the collection is not known before apply (how many blocks, if any, cannot
    be told: the caller records the label so that a rule needing those blocks says UNDECIDED)."""
    iterator = dyn.get("iterator")
    name = iterator.text if isinstance(iterator, Expr) else (iterator if isinstance(iterator, str) else label)
    contents = dyn.get("content") or []
    content = contents[0] if isinstance(contents, list) and contents else (contents if isinstance(contents, dict) else {})
    coll = scope.evaluate(dyn.get("for_each"))
    if coll is None:
        return []
    if isinstance(coll, dict) and not isinstance(coll, Unknown):
        items = list(coll.items())
    elif isinstance(coll, list):
        items = list(enumerate(coll))
    else:
        return None
    return [evaluate_body(scope.child(**{name: {"key": k, "value": v}}), content, top=False) for k, v in items]


# --- modules ----------------------------------------------------------------------------------------

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
            raw = self.raw_variables.get(name, _NO_DEFAULT)
            if raw is _NO_DEFAULT:
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
        for scope in _instances(self.scope, body):
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
                for scope in _instances(self.scope, body):
                    values = evaluate_body(scope, body)
                    yield Resource(type=rtype, name=name, address=base + instance_key(scope, body), values=values,
                                   file=str(f.path), refs=references_in(values), attr_refs=_attr_refs_from_values(values),
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


# --- expressions beyond a plain traversal ------------------------------------------------------------

_TOKEN = re.compile(r'''\s*(?:
    (?P<num>\d+(?:\.\d+)?(?![\w.]))
  | (?P<str>")
  | (?P<name>[A-Za-z_][\w-]*)
  | (?P<op>==|!=|&&|\|\||>=|<=|=>|\.\.\.|[?:!\[\]{}(),.=<>*+/%-])
)''', re.VERBOSE)

FUNCTIONS = {"lookup", "length", "try", "coalesce", "merge", "concat", "tolist", "toset", "tostring", "tonumber",
             "tomap", "element", "jsonencode", "can", "compact", "distinct", "contains", "keys", "values", "upper", "lower"}


class _Unparsable(Exception):
    pass


def _tokens(text: str) -> list[tuple[str, str]]:
    out, i = [], 0
    while i < len(text):
        if text[i:].strip() == "":
            break
        m = _TOKEN.match(text, i)
        if not m:
            raise _Unparsable(text[i:])
        if m.group("str"):
            j, start = m.end(), m.end()
            while j < len(text) and text[j] != '"':
                if text[j] == "\\":
                    j += 2
                    continue
                if text.startswith("${", j) or text.startswith("%{", j):
                    end = _closing(text, j + 2)
                    if end < 0:
                        raise _Unparsable(text)
                    j = end + 1
                    continue
                j += 1
            if j >= len(text):
                raise _Unparsable(text)
            out.append(("str", text[start:j]))
            i = j + 1
            continue
        kind = next(k for k in ("num", "name", "op") if m.group(k) is not None)
        out.append((kind, m.group(kind)))
        i = m.end()
    return out


class _Parser:
    """Evaluates an HCL expression; a part that cannot be known makes the whole expression unknown
    (kept as its text, references intact)."""

    def __init__(self, scope: Scope, text: str):
        self.scope, self.text, self.toks, self.i = scope, text, _tokens(text), 0
        self.in_try = 0  # inside try() / can(): a missing attribute is an error there, null elsewhere

    def peek(self, value: str | None = None) -> bool:
        return self.i < len(self.toks) and (value is None or self.toks[self.i][1] == value)

    def take(self, value: str | None = None) -> tuple[str, str]:
        if not self.peek(value):
            raise _Unparsable(self.text)
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def parse(self) -> Any:
        value = self.conditional()
        if self.i != len(self.toks):
            raise _Unparsable(self.text)
        return value

    def conditional(self) -> Any:
        cond = self.binary(0)
        if not self.peek("?"):
            return cond
        self.take("?")
        yes = self.conditional()
        self.take(":")
        no = self.conditional()
        if isinstance(cond, bool):
            return yes if cond else no
        raise _Unknown()

    _LEVELS = (("||",), ("&&",), ("==", "!="))

    def binary(self, level: int) -> Any:
        if level == len(self._LEVELS):
            return self.unary()
        left = self.binary(level + 1)
        while self.peek() and self.toks[self.i][1] in self._LEVELS[level]:
            op = self.take()[1]
            right = self.binary(level + 1)
            if op in ("==", "!=") and (left is None or right is None) and not isinstance(left, Unknown) \
                    and not isinstance(right, Unknown):
                # a map or list is known to be non-null even when some of its elements are unknown
                left = (left is None and right is None) == (op == "==")
                continue
            if _has_unknown(left) or _has_unknown(right):
                raise _Unknown()
            if op == "||":
                left = bool(left) or bool(right)
            elif op == "&&":
                left = bool(left) and bool(right)
            elif op == "==":
                left = left == right
            else:
                left = left != right
        if self.peek() and self.toks[self.i][1] in ("<", ">", "<=", ">=", "+", "-", "*", "/", "%"):
            raise _Unknown()  # arithmetic and ordering: not evaluated
        return left

    def unary(self) -> Any:
        if self.peek("!"):
            self.take()
            value = self.unary()
            if not isinstance(value, bool):
                raise _Unknown()
            return not value
        if self.peek("-") and self.i + 1 < len(self.toks) and self.toks[self.i + 1][0] == "num":
            self.take()
            return -_number(self.take()[1])
        return self.postfix(self.primary())

    def postfix(self, value: Any) -> Any:
        while True:
            if self.peek("."):
                self.take()
                kind, name = self.take()
                if name == "*" or kind not in ("name", "num"):
                    raise _Unknown()
                value = self.index(value, int(name) if kind == "num" else name)
            elif self.peek("["):
                self.take()
                if self.peek("*"):
                    raise _Unknown()
                key = self.conditional()
                self.take("]")
                value = self.index(value, key)
            else:
                return value

    def index(self, value: Any, key: Any) -> Any:
        if isinstance(value, dict) and not isinstance(value, Unknown) and isinstance(key, (str, int)) and str(key) in value:
            return value[str(key)]
        if isinstance(value, dict) and isinstance(key, str) and not isinstance(key, Unknown):
            if self.in_try:
                raise _Missing()
            return None  # an attribute the object does not set: null, as an optional() attribute
        if isinstance(value, list) and isinstance(key, int) and not isinstance(key, bool) and 0 <= key < len(value):
            return value[key]
        raise _Unknown()

    def primary(self) -> Any:
        kind, tok = self.take()
        if kind == "num":
            return _number(tok)
        if kind == "str":
            return self.scope.template(tok) if ("${" in tok or "%{" in tok) else _unquote(tok)
        if tok == "(":
            value = self.conditional()
            self.take(")")
            return value
        if tok == "[":
            if self.peek("for"):
                return self.for_expression("]")
            items = []
            while not self.peek("]"):
                items.append(self.conditional())
                if not self.peek("]"):
                    self.take(",")
            self.take("]")
            return items
        if tok == "{":
            if self.peek("for"):
                return self.for_expression("}")
            obj: dict[str, Any] = {}
            while not self.peek("}"):
                key = self.conditional() if self.peek("(") else None
                if key is None:
                    k_kind, k_tok = self.take()
                    if k_kind == "str":
                        key = self.scope.template(k_tok) if ("${" in k_tok or "%{" in k_tok) else _unquote(k_tok)
                    else:
                        key = k_tok if k_kind == "name" else None
                if self.peek("="):
                    self.take()
                else:
                    self.take(":")
                value = self.conditional()
                if not isinstance(key, str) or isinstance(key, Unknown):
                    raise _Unknown()
                obj[key] = value
                if self.peek(","):
                    self.take()
            self.take("}")
            return obj
        if kind == "name":
            if tok in ("true", "false"):
                return tok == "true"
            if tok == "null":
                return None
            if self.peek("("):
                return self.call(tok)
            return self.traversal(tok)
        raise _Unparsable(self.text)

    def for_expression(self, closing: str) -> Any:
        """``[for k, v in coll : expr if cond]`` / ``{for k, v in coll : key => value if cond}`` over a
        known collection: the body is evaluated once per element with the iterators bound."""
        self.take("for")
        names = [self.take()[1]]
        if self.peek(","):
            self.take(",")
            names.append(self.take()[1])
        self.take("in")
        collection = self.conditional()
        self.take(":")
        if isinstance(collection, Unknown) or not isinstance(collection, (dict, list)):
            raise _Unknown()
        items = list(collection.items()) if isinstance(collection, dict) else list(enumerate(collection))
        body, outer = self.i, self.scope
        out_list: list = []
        out_map: dict = {}
        try:
            for key, value in items:
                bound = {names[0]: key, names[1]: value} if len(names) == 2 else {names[0]: value}
                self.scope, self.i = outer.child(**bound), body
                if closing == "]":
                    item = self.conditional()
                else:
                    item_key = self.conditional()
                    self.take("=>")
                    item = self.conditional()
                    if self.peek("..."):
                        raise _Unknown()  # grouping mode
                if self.peek("if"):
                    self.take("if")
                    keep = self.conditional()
                    if not isinstance(keep, bool):
                        raise _Unknown()
                    if not keep:
                        continue
                if closing == "]":
                    out_list.append(item)
                else:
                    if not isinstance(item_key, (str, int)) or isinstance(item_key, Unknown):
                        raise _Unknown()
                    out_map[str(item_key)] = item
        finally:
            self.scope = outer
        self.i = body
        self._skip_to(closing)
        self.take(closing)
        return out_list if closing == "]" else out_map

    def _skip_to(self, closing: str) -> None:
        depth = 0
        while self.i < len(self.toks):
            tok = self.toks[self.i][1] if self.toks[self.i][0] == "op" else None
            if depth == 0 and tok == closing:
                return
            depth += tok in ("(", "[", "{")
            depth -= tok in (")", "]", "}")
            self.i += 1
        raise _Unparsable(self.text)

    def traversal(self, head: str) -> Any:
        """``var.x`` / ``local.x`` / ``module.m.o`` / iterators; anything else is unknown."""
        if head in ("var", "local") or head in self.scope.iters:
            if head in self.scope.iters:
                return self.scope.iters[head]
            self.take(".")
            name = self.take()[1]
            value = self.scope.module.variable(name) if head == "var" else self.scope.module.local(name)
            if isinstance(value, Unknown) and not _RESOURCE_REF.search(value):
                raise _Unknown()
            return value
        if head == "module" and self.peek("."):
            self.take(".")
            value = self.scope.module.module_object(self.take()[1])
            if isinstance(value, Unknown):
                raise _Unknown()
            return value
        raise _Unknown()

    def call(self, name: str) -> Any:
        self.take("(")
        guarded = name in ("try", "can")
        self.in_try += guarded
        try:
            args = self._arguments()
        finally:
            self.in_try -= guarded
        if name not in FUNCTIONS:
            raise _Unknown()
        return _call(name, args)

    def _arguments(self) -> list:
        args: list = []
        while not self.peek(")"):
            try:
                args.append(self.conditional())
            except _Missing:
                args.append(_MISSING_ARG)
                self._skip_arg()
            except _Unknown:
                args.append(_UNKNOWN_ARG)
                self._skip_arg()
            if self.peek(","):
                self.take()
            if self.peek("..."):
                raise _Unknown()
        self.take(")")
        return args

    def _skip_arg(self) -> None:
        depth = 0
        while self.i < len(self.toks):
            tok = self.toks[self.i][1]
            if depth == 0 and tok in (",", ")"):
                return
            depth += tok in ("(", "[", "{")
            depth -= tok in (")", "]", "}")
            self.i += 1


class _Unknown(Exception):
    pass


class _Missing(Exception):
    """An attribute a known object does not have."""


_UNKNOWN_ARG = Unknown("${?}")
_MISSING_ARG = object()


def _number(text: str) -> int | float:
    return float(text) if "." in text else int(text)


def _has_unknown(value: Any) -> bool:
    if isinstance(value, Unknown):
        return True
    if isinstance(value, list):
        return any(_has_unknown(v) for v in value)
    if isinstance(value, dict):
        return any(_has_unknown(v) for v in value.values())
    return False


def _call(name: str, args: list) -> Any:
    if name == "try":
        for a in args:
            if a is _MISSING_ARG:
                continue
            if _has_unknown(a):
                raise _Unknown()
            return a
        raise _Unknown()
    if name == "can":
        if args and args[0] is _MISSING_ARG:
            return False
        if not args or _has_unknown(args[0]):
            raise _Unknown()
        return True
    if any(a is _MISSING_ARG for a in args):
        raise _Missing()
    if name == "coalesce":
        for a in args:
            if _has_unknown(a):
                raise _Unknown()
            if a not in (None, ""):
                return a
        raise _Unknown()
    if any(_has_unknown(a) for a in args):
        raise _Unknown()
    try:
        if name == "lookup":
            return args[0].get(args[1], args[2]) if len(args) == 3 else args[0][args[1]]
        if name == "length":
            return len(args[0])
        if name == "merge":
            out: dict = {}
            for a in args:
                if a is not None:
                    out.update(a)
            return out
        if name == "concat":
            return [v for a in args for v in a]
        if name in ("tolist", "tomap", "tostring"):
            return args[0]
        if name == "toset":
            return sorted(set(args[0]), key=str)
        if name == "tonumber":
            return _number(str(args[0]))
        if name == "element":
            return args[0][args[1] % len(args[0])]
        if name == "jsonencode":
            return json.dumps(args[0], separators=(",", ":"))
        if name == "compact":
            return [v for v in args[0] if v not in (None, "")]
        if name == "distinct":
            return list(dict.fromkeys(args[0]))
        if name == "contains":
            return args[1] in args[0]
        if name == "keys":
            return sorted(args[0])
        if name == "values":
            return [args[0][k] for k in sorted(args[0])]
        if name in ("upper", "lower"):
            return getattr(str(args[0]), name)()
    except (TypeError, KeyError, IndexError, ValueError, AttributeError, ZeroDivisionError):
        raise _Unknown() from None
    raise _Unknown()


def evaluate_expression(scope: Scope, text: str) -> Any:
    try:
        return _Parser(scope, text).parse()
    except _Missing:
        return None
    except (_Unknown, _Unparsable, RecursionError):
        return scope.unknown(text)


# --- the parse tree, read directly ---------------------------------------------------------------------
# python-hcl2's own dict output (``hcl2.loads``) goes through a rule transformer and a serializer that
# cost twice the parse itself; the loader needs only the raw values above, so it walks the Lark tree
# of python-hcl2's grammar and takes each non-literal expression's exact source text.

def _tree_doc(text: str) -> dict:
    from lark import Tree

    from hcl2.parser import parser

    tree = parser().parse(text + "\n")
    body = next(c for c in tree.children if isinstance(c, Tree) and c.data == "body")
    doc = _tree_body(body, text)
    doc[_SPANS] = [((_label(parts[1], text), _label(parts[2], text)), node.meta.start_pos, node.meta.end_pos)
                   for node in _children(body) if node.data == "block"
                   for parts in [_children(node)] if len(parts) == 4 and _label(parts[0], text) == "resource"]
    return doc


_SPANS = "__resource_spans__"
SKIP_COMMENT = re.compile(r"(?m)(?:#|//)[ \t]*spotkit:skip-check[ \t]*[=:]?[ \t]*(.+?)[ \t]*$")


def skip_comments(text: str, spans: list) -> dict[tuple[str, str], list[str]]:
    """``# spotkit:skip-check SPOT003: reason`` comments inside a resource block (or on the line just
    above it), by resource: the HCL way to write the suppression tag."""
    out: dict[tuple[str, str], list[str]] = {}
    for m in SKIP_COMMENT.finditer(text):
        for key, start, end in spans:
            above = text.count("\n", m.end(), start) == 1 and not text[m.end():start].strip()
            if start <= m.start() < end or above:
                out.setdefault(key, []).append(m.group(1))
                break
    return out


def _children(node) -> list:
    from lark import Tree

    return [c for c in node.children if isinstance(c, Tree) and c.data != "new_line_or_comment"]


def _tree_body(body, text: str) -> dict:
    out: dict[str, Any] = {}
    for node in _children(body):
        if node.data == "attribute":
            key_node, value_node = _children(node)[0], _children(node)[-1]
            out[_label(key_node, text)] = _tree_value(value_node, text)
        elif node.data == "block":
            parts = _children(node)
            inner = parts[-1]
            labels = [_label(p, text) for p in parts[:-1]]
            entry: Any = _tree_body(inner, text)
            for label in reversed(labels[1:]):
                entry = {label: entry}
            out.setdefault(labels[0], []).append(entry)
    return out


def _label(node, text: str) -> str:
    if node.data == "string":
        return _unquote(text[node.meta.start_pos + 1:node.meta.end_pos - 1])
    return str(next(iter(node.scan_values(lambda v: True))))


def _tree_value(node, text: str) -> Any:
    from lark import Token

    while node.data == "expr_term" and len(node.children) == 1 and not isinstance(node.children[0], Token):
        node = node.children[0]
    kind = node.data
    if kind == "int_lit":
        return int(str(node.children[0]))
    if kind == "float_lit":
        value = str(node.children[0])
        return float(value)
    if kind == "literal_value":
        word = str(node.children[0])
        return None if word == "null" else word == "true"
    if kind == "string":
        inner = text[node.meta.start_pos + 1:node.meta.end_pos - 1]
        return Template(inner) if ("${" in inner or "%{" in inner) else _unquote(inner)
    if kind == "tuple":
        return [_tree_value(c, text) for c in _children(node)]
    if kind == "object":
        obj: dict[str, Any] = {}
        for elem in _children(node):
            key_node, value_node = _children(elem)[0], _children(elem)[-1]
            key = _object_key(key_node, text)
            if key is None:
                return Expr(text[node.meta.start_pos:node.meta.end_pos])
            obj[key] = _tree_value(value_node, text)
        return obj
    if kind in ("heredoc_template", "heredoc_template_trim"):
        raw = str(node.children[0])
        lines = raw.split("\n")
        content = "\n".join(lines[1:-2]) + ("\n" if len(lines) > 3 else "")
        if kind == "heredoc_template_trim":
            import textwrap

            content = textwrap.dedent(content)
        return Template(content.replace("\\", "\\\\").replace('"', '\\"')) if ("${" in content or "%{" in content) else content
    if kind == "identifier":
        return Expr(str(node.children[0]))
    return Expr(text[node.meta.start_pos:node.meta.end_pos].strip())


def _object_key(node, text: str) -> str | None:
    while node.data in ("object_elem_key", "expr_term") and len(_children(node)) == 1:
        node = _children(node)[0]
    if node.data in ("identifier", "keyword"):
        return str(node.children[0])
    if node.data == "string":
        inner = text[node.meta.start_pos + 1:node.meta.end_pos - 1]
        return None if "${" in inner else _unquote(inner)
    return None


# --- type constraints: optional() defaults ------------------------------------------------------------
# A variable's value is converted to its type constraint before use. What matters before a plan is
# ``optional(type, default)``: an object attribute that is absent or null takes its default, at any
# depth (objects inside lists, maps and other objects), in a module call's argument and in the
# variable's own default alike. Other conversions (number <-> string...) do not change what the rules read.

_PRIMITIVES = {"string", "number", "bool", "any"}


@dataclass(frozen=True)
class Attr:
    type: Any
    optional: bool
    default: Any


def _strip_comments(text: str) -> str:
    """The type expression without ``#`` / ``//`` / ``/* */`` comments (strings kept as they are)."""
    out, i, quote = [], 0, False
    while i < len(text):
        c = text[i]
        if quote:
            out.append(c)
            if c == "\\" and i + 1 < len(text):
                out.append(text[i + 1])
                i += 2
                continue
            quote = c != '"'
            i += 1
        elif c == '"':
            quote = True
            out.append(c)
            i += 1
        elif c == "#" or text.startswith("//", i):
            end = text.find("\n", i)
            i = len(text) if end < 0 else end
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = len(text) if end < 0 else end + 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def parse_type(scope: Scope, text: str) -> Any:
    """A type constraint as a tree: ``"string"``..., ``("list", t)``, ``("set", t)``, ``("map", t)``,
    ``("tuple", [t...])``, ``("object", {name: Attr})``; ``"any"`` for what cannot be read."""
    try:
        parser = _Parser(scope, _strip_comments(text))
        typ = _type(parser)
        return typ if parser.i == len(parser.toks) else "any"
    except (_Unparsable, _Unknown, _Missing, RecursionError):
        return "any"


def _type(p: "_Parser") -> Any:
    kind, name = p.take()
    if kind != "name":
        raise _Unparsable(p.text)
    if name in _PRIMITIVES:
        return name
    p.take("(")
    if name in ("list", "set", "map"):
        out: Any = (name, _type(p))
    elif name == "tuple":
        p.take("[")
        items = []
        while not p.peek("]"):
            items.append(_type(p))
            if p.peek(","):
                p.take()
        p.take("]")
        out = ("tuple", items)
    elif name == "object":
        p.take("{")
        attrs: dict[str, Attr] = {}
        while not p.peek("}"):
            k_kind, key = p.take()
            key = _unquote(key) if k_kind == "str" else key
            if p.peek("="):
                p.take()
            else:
                p.take(":")
            attrs[key] = _attr(p)
            if p.peek(","):
                p.take()
        p.take("}")
        out = ("object", attrs)
    else:
        raise _Unparsable(p.text)
    p.take(")")
    return out


def _attr(p: "_Parser") -> Attr:
    if not (p.peek("optional") and p.i + 1 < len(p.toks) and p.toks[p.i + 1][1] == "("):
        return Attr(_type(p), False, None)
    p.take("optional")
    p.take("(")
    typ = _type(p)
    default = None
    if p.peek(","):
        p.take()
        try:
            default = p.conditional()
        except _Unknown:
            default = unknown("optional default")
            p._skip_arg()
    p.take(")")
    return Attr(typ, True, default)


def apply_type(value: Any, typ: Any) -> Any:
    """``value`` with the ``optional()`` defaults of ``typ`` filled in (unknown and null values as they are)."""
    if value is None or isinstance(value, Unknown) or isinstance(typ, str):
        return value
    kind, inner = typ
    if kind == "object" and isinstance(value, dict):
        out = dict(value)
        for name, attr in inner.items():
            given = value.get(name)
            if given is None and attr.optional:
                out[name] = apply_type(attr.default, attr.type) if attr.default is not None else None
            elif name in value:
                out[name] = apply_type(given, attr.type)
        return out
    if kind in ("list", "set") and isinstance(value, list):
        return [apply_type(v, inner) for v in value]
    if kind == "map" and isinstance(value, dict):
        return {k: apply_type(v, inner) for k, v in value.items()}
    if kind == "tuple" and isinstance(value, list):
        return [apply_type(v, t) for v, t in zip(value, inner)] + value[len(inner):]
    return value
