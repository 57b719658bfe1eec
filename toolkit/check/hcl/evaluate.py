"""Evaluate raw values inside one module instance: traversals (``var.x``, ``local.x``, ``module.m.o``,
iterators), string templates, ``count`` / ``for_each`` instances and ``dynamic`` blocks. Expressions
beyond a traversal go to ``expressions``; what cannot be known stays an ``Unknown``."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from spotkit.check.graph import UNKNOWN_BLOCKS
from spotkit.check.hcl.expressions import evaluate_expression
from spotkit.check.hcl.parse import labelled
from spotkit.check.hcl.values import RESOURCE_REF, Expr, Template, Unknown, closing, unknown, unquote

if TYPE_CHECKING:
    from spotkit.check.hcl.load import Module

META_ARGS = {"count", "for_each", "depends_on", "provider", "lifecycle", "provisioner", "connection"}
_TRAVERSAL = re.compile(r'^[A-Za-z_][\w-]*(?:\.[A-Za-z_][\w-]*|\.\d+|\[\s*(?:\d+|"[^"\\]*")\s*\])*$')
_STEP = re.compile(r'\.([A-Za-z_][\w-]*|\d+)|\[\s*(\d+|"[^"\\]*")\s*\]')


class Scope:
    """What names mean inside one module instance (and one resource instance / dynamic block)."""

    def __init__(self, module: "Module", iters: dict[str, Any] | None = None):
        self.module = module
        self.iters = iters or {}

    def child(self, **iters: Any) -> "Scope":
        return Scope(self.module, {**self.iters, **iters})

    def prefix_refs(self, text: str) -> str:
        prefix = self.module.prefix
        return RESOURCE_REF.sub(lambda m: prefix + m.group(1), text) if prefix else text

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
            end = closing(text, start + 2)
            if end < 0:
                return self.unknown(json.dumps(text))
            if start > i:
                parts.append(text[i:start])
            parts.append(self.expression(text[start + 2:end].strip()))
            i = end + 1
        parts = [unquote(p) if isinstance(p, str) and not isinstance(p, Unknown) else p for p in parts]
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
        if len(text) >= 2 and text.startswith('"') and text.endswith('"') and closing("{" + text, 1) == -1:
            inner = text[1:-1]
            return self.template(inner) if "${" in inner else unquote(inner)
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
                return self.unknown(text) if not RESOURCE_REF.search(value) else Unknown(value[:-1] + _steps_text([step]) + "}")
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


def instance_scopes(scope: Scope, body: dict) -> list[Scope]:
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
            for label, dyn in labelled(raw):
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
