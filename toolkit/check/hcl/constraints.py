"""Type constraints of variables, for their ``optional()`` defaults.

A variable's value is converted to its type constraint before use. What matters before a plan is
``optional(type, default)``: an object attribute that is absent or null takes its default, at any
depth (objects inside lists, maps and other objects), in a module call's argument and in the
variable's own default alike. Other conversions (number <-> string...) do not change what the rules read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from spotkit.check.hcl.expressions import ExpressionParser, Unparsable
from spotkit.check.hcl.values import MissingAttribute, NotKnown, Unknown, unknown, unquote

if TYPE_CHECKING:
    from spotkit.check.hcl.evaluate import Scope

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
        parser = ExpressionParser(scope, _strip_comments(text))
        typ = _type(parser)
        return typ if parser.i == len(parser.toks) else "any"
    except (Unparsable, NotKnown, MissingAttribute, RecursionError):
        return "any"


def _type(p: ExpressionParser) -> Any:
    kind, name = p.take()
    if kind != "name":
        raise Unparsable(p.text)
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
            key = unquote(key) if k_kind == "str" else key
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
        raise Unparsable(p.text)
    p.take(")")
    return out


def _attr(p: ExpressionParser) -> Attr:
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
        except NotKnown:
            default = unknown("optional default")
            p.skip_arg()
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
