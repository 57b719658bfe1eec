"""The Terraform built-in functions evaluated before a plan: pure ones over known values. Any other
function, or an argument not known before apply, makes the call unknown (``NotKnown``)."""

from __future__ import annotations

import json
from typing import Any, Callable

from spotkit.check.hcl.values import MissingAttribute, NotKnown, Unknown

UNKNOWN_ARG = Unknown("${?}")  # an argument that is not known before apply
MISSING_ARG = object()  # an argument that names an attribute a known object does not have


def to_number(text: str) -> int | float:
    return float(text) if "." in text else int(text)


def has_unknown(value: Any) -> bool:
    if isinstance(value, Unknown):
        return True
    if isinstance(value, list):
        return any(has_unknown(v) for v in value)
    if isinstance(value, dict):
        return any(has_unknown(v) for v in value.values())
    return False


def _merge(*args: Any) -> dict:
    out: dict = {}
    for a in args:
        if a is not None:
            out.update(a)
    return out


def _lookup(*args: Any) -> Any:
    return args[0].get(args[1], args[2]) if len(args) == 3 else args[0][args[1]]


# pure functions: every argument known and present
_PURE: dict[str, Callable[..., Any]] = {
    "lookup": _lookup,
    "length": lambda *a: len(a[0]),
    "merge": _merge,
    "concat": lambda *a: [v for x in a for v in x],
    "tolist": lambda *a: a[0],
    "tomap": lambda *a: a[0],
    "tostring": lambda *a: a[0],
    "toset": lambda *a: sorted(set(a[0]), key=str),
    "tonumber": lambda *a: to_number(str(a[0])),
    "element": lambda *a: a[0][a[1] % len(a[0])],
    "jsonencode": lambda *a: json.dumps(a[0], separators=(",", ":")),
    "compact": lambda *a: [v for v in a[0] if v not in (None, "")],
    "distinct": lambda *a: list(dict.fromkeys(a[0])),
    "contains": lambda *a: a[1] in a[0],
    "keys": lambda *a: sorted(a[0]),
    "values": lambda *a: [a[0][k] for k in sorted(a[0])],
    "upper": lambda *a: str(a[0]).upper(),
    "lower": lambda *a: str(a[0]).lower(),
}
FUNCTIONS = {"try", "can", "coalesce", *_PURE}


def _try(args: list) -> Any:
    for a in args:
        if a is MISSING_ARG:
            continue
        if has_unknown(a):
            raise NotKnown()
        return a
    raise NotKnown()


def _can(args: list) -> bool:
    if args and args[0] is MISSING_ARG:
        return False
    if not args or has_unknown(args[0]):
        raise NotKnown()
    return True


def _coalesce(args: list) -> Any:
    for a in args:
        if has_unknown(a):
            raise NotKnown()
        if a not in (None, ""):
            return a
    raise NotKnown()


def call_function(name: str, args: list) -> Any:
    """``name(args...)``: ``try`` / ``can`` see missing attributes (``MISSING_ARG``); any other
    function with one raises ``MissingAttribute``, and with an unknown argument ``NotKnown``."""
    if name == "try":
        return _try(args)
    if name == "can":
        return _can(args)
    if any(a is MISSING_ARG for a in args):
        raise MissingAttribute()
    if name == "coalesce":
        return _coalesce(args)
    if any(has_unknown(a) for a in args) or name not in _PURE:
        raise NotKnown()
    try:
        return _PURE[name](*args)
    except (TypeError, KeyError, IndexError, ValueError, AttributeError, ZeroDivisionError):
        raise NotKnown() from None
