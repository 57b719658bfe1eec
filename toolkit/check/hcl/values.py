"""The values the HCL reader and evaluator pass around: raw expressions and templates (what a file
says), ``Unknown`` (what cannot be known before apply), and the string scanning both need."""

from __future__ import annotations

import re
from dataclasses import dataclass

_ESCAPE = re.compile(r'\\(["\\nrt])')
_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "r": "\r", "t": "\t"}
# a resource reference inside an expression's text (``aws_lb.web``, ``data.aws_ami.x``)
RESOURCE_REF = re.compile(r"(?<![\w.\"])((?:data\.)?aws_[a-z0-9_]+\.[A-Za-z_][\w-]*)")


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


def unquote(text: str) -> str:
    return _ESCAPE.sub(lambda m: _ESCAPES[m.group(1)], text)


def closing(text: str, start: int) -> int:
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


class NotKnown(Exception):
    """Raised inside an expression when a value it needs is not known before apply."""


class MissingAttribute(Exception):
    """An attribute a known object does not have."""
