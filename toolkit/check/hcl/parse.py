"""Parse one Terraform file (HCL through python-hcl2's grammar, or Terraform JSON) into raw values:
literals as they are, every other expression as ``Expr`` / ``Template`` with its exact source text,
evaluated later by ``evaluate``."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from spotkit.check.hcl.values import Expr, Template, Unknown, closing, unquote
from spotkit.check.inputs import read_input
from spotkit.errors import ToolkitError
from spotkit.runtime.notice import TAG_SKIP_CHECK


def _raw_from_json(value: Any) -> Any:
    """Terraform JSON syntax: every string is a template."""
    if isinstance(value, str):
        if "${" not in value and "%{" not in value:
            return value
        stripped = value.strip()
        if stripped.startswith("${") and stripped.endswith("}") and closing(stripped, 2) == len(stripped) - 1:
            return Expr(stripped[2:-1].strip())
        return Template(value)
    if isinstance(value, list):
        return [_raw_from_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _raw_from_json(v) for k, v in value.items()}
    return value


def _key(k: str) -> str:
    return k[1:-1] if len(k) >= 2 and k.startswith('"') and k.endswith('"') else k


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


def labelled(section: Any) -> Iterator[tuple[str, Any]]:
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
            out.comments[key] = {TAG_SKIP_CHECK: texts}
    for rtype, bodies in labelled(doc.get("resource") or []):
        for name, body in labelled(bodies):
            if isinstance(body, dict):
                if "//" in body:
                    out.comments[(rtype, name)] = body["//"]
                out.resources.append((rtype, name, convert({k: v for k, v in body.items() if k != "//"}), line("resource", rtype, name)))
    for name, body in labelled(doc.get("variable") or []):
        if isinstance(body, dict):
            out.variables[name] = convert(body.get("default")) if "default" in body else NO_DEFAULT
            if body.get("nullable") is False:
                out.not_nullable.add(name)
            typ = body.get("type")
            if isinstance(typ, (Expr, str)) and not isinstance(typ, Unknown):
                out.var_types[name] = typ.text if isinstance(typ, Expr) else typ
    for body in doc.get("locals") or [] if isinstance(doc.get("locals"), list) else [doc.get("locals") or {}]:
        if isinstance(body, dict):
            out.locals.update({_key(k): convert(v) for k, v in body.items() if k not in ("__is_block__", "//")})
    for name, body in labelled(doc.get("output") or []):
        if isinstance(body, dict):
            out.outputs[name] = convert(body.get("value"))
    for name, body in labelled(doc.get("module") or []):
        if isinstance(body, dict):
            out.modules.append((name, convert(body), line("module", name)))
    return out


NO_DEFAULT = object()


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


def _tree_doc(text: str) -> dict:
    """The parse tree, read directly: python-hcl2's own dict output (``hcl2.loads``) goes through a rule
    transformer and a serializer that cost twice the parse itself; the loader needs only raw values, so
    this walks the Lark tree of python-hcl2's grammar and takes each non-literal expression's exact
    source text."""
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
SKIP_COMMENT = re.compile(r"(?m)(?:#|//)[ \t]*" + re.escape(TAG_SKIP_CHECK) + r"[ \t]*[=:]?[ \t]*(.+?)[ \t]*$")


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
        return unquote(text[node.meta.start_pos + 1:node.meta.end_pos - 1])
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
        return Template(inner) if ("${" in inner or "%{" in inner) else unquote(inner)
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
        return None if "${" in inner else unquote(inner)
    return None
