"""HCL expressions beyond a plain traversal: conditionals, ``==`` / ``!=`` / ``&&`` / ``||`` / ``!``,
indexing, lists and objects, ``for`` expressions and function calls, on known values. A part that
cannot be known makes the whole expression unknown, kept as its text with references intact."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from spotkit.check.hcl.functions import FUNCTIONS, MISSING_ARG, UNKNOWN_ARG, call_function, has_unknown, to_number
from spotkit.check.hcl.values import RESOURCE_REF, MissingAttribute, NotKnown, Unknown, closing, unquote

if TYPE_CHECKING:
    from spotkit.check.hcl.evaluate import Scope


class Unparsable(Exception):
    """Text that is not an expression this parser reads."""


_TOKEN = re.compile(r'''\s*(?:
    (?P<num>\d+(?:\.\d+)?(?![\w.]))
  | (?P<str>")
  | (?P<name>[A-Za-z_][\w-]*)
  | (?P<op>==|!=|&&|\|\||>=|<=|=>|\.\.\.|[?:!\[\]{}(),.=<>*+/%-])
)''', re.VERBOSE)


def _tokens(text: str) -> list[tuple[str, str]]:
    out, i = [], 0
    while i < len(text):
        if text[i:].strip() == "":
            break
        m = _TOKEN.match(text, i)
        if not m:
            raise Unparsable(text[i:])
        if m.group("str"):
            j, start = m.end(), m.end()
            while j < len(text) and text[j] != '"':
                if text[j] == "\\":
                    j += 2
                    continue
                if text.startswith("${", j) or text.startswith("%{", j):
                    end = closing(text, j + 2)
                    if end < 0:
                        raise Unparsable(text)
                    j = end + 1
                    continue
                j += 1
            if j >= len(text):
                raise Unparsable(text)
            out.append(("str", text[start:j]))
            i = j + 1
            continue
        kind = next(k for k in ("num", "name", "op") if m.group(k) is not None)
        out.append((kind, m.group(kind)))
        i = m.end()
    return out


class ExpressionParser:
    """Evaluates an HCL expression; a part that cannot be known makes the whole expression unknown
    (kept as its text, references intact)."""

    def __init__(self, scope: Scope, text: str):
        self.scope, self.text, self.toks, self.i = scope, text, _tokens(text), 0
        self.in_try = 0  # inside try() / can(): a missing attribute is an error there, null elsewhere

    def peek(self, value: str | None = None) -> bool:
        return self.i < len(self.toks) and (value is None or self.toks[self.i][1] == value)

    def take(self, value: str | None = None) -> tuple[str, str]:
        if not self.peek(value):
            raise Unparsable(self.text)
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def parse(self) -> Any:
        value = self.conditional()
        if self.i != len(self.toks):
            raise Unparsable(self.text)
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
        raise NotKnown()

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
            if has_unknown(left) or has_unknown(right):
                raise NotKnown()
            if op == "||":
                left = bool(left) or bool(right)
            elif op == "&&":
                left = bool(left) and bool(right)
            elif op == "==":
                left = left == right
            else:
                left = left != right
        if self.peek() and self.toks[self.i][1] in ("<", ">", "<=", ">=", "+", "-", "*", "/", "%"):
            raise NotKnown()  # arithmetic and ordering: not evaluated
        return left

    def unary(self) -> Any:
        if self.peek("!"):
            self.take()
            value = self.unary()
            if not isinstance(value, bool):
                raise NotKnown()
            return not value
        if self.peek("-") and self.i + 1 < len(self.toks) and self.toks[self.i + 1][0] == "num":
            self.take()
            return -to_number(self.take()[1])
        return self.postfix(self.primary())

    def postfix(self, value: Any) -> Any:
        while True:
            if self.peek("."):
                self.take()
                kind, name = self.take()
                if name == "*" or kind not in ("name", "num"):
                    raise NotKnown()
                value = self.index(value, int(name) if kind == "num" else name)
            elif self.peek("["):
                self.take()
                if self.peek("*"):
                    raise NotKnown()
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
                raise MissingAttribute()
            return None  # an attribute the object does not set: null, as an optional() attribute
        if isinstance(value, list) and isinstance(key, int) and not isinstance(key, bool) and 0 <= key < len(value):
            return value[key]
        raise NotKnown()

    def primary(self) -> Any:
        kind, tok = self.take()
        if kind == "num":
            return to_number(tok)
        if kind == "str":
            return self.scope.template(tok) if ("${" in tok or "%{" in tok) else unquote(tok)
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
                        key = self.scope.template(k_tok) if ("${" in k_tok or "%{" in k_tok) else unquote(k_tok)
                    else:
                        key = k_tok if k_kind == "name" else None
                if self.peek("="):
                    self.take()
                else:
                    self.take(":")
                value = self.conditional()
                if not isinstance(key, str) or isinstance(key, Unknown):
                    raise NotKnown()
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
        raise Unparsable(self.text)

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
            raise NotKnown()
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
                        raise NotKnown()  # grouping mode
                if self.peek("if"):
                    self.take("if")
                    keep = self.conditional()
                    if not isinstance(keep, bool):
                        raise NotKnown()
                    if not keep:
                        continue
                if closing == "]":
                    out_list.append(item)
                else:
                    if not isinstance(item_key, (str, int)) or isinstance(item_key, Unknown):
                        raise NotKnown()
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
        raise Unparsable(self.text)

    def traversal(self, head: str) -> Any:
        """``var.x`` / ``local.x`` / ``module.m.o`` / iterators; anything else is unknown."""
        if head in ("var", "local") or head in self.scope.iters:
            if head in self.scope.iters:
                return self.scope.iters[head]
            self.take(".")
            name = self.take()[1]
            value = self.scope.module.variable(name) if head == "var" else self.scope.module.local(name)
            if isinstance(value, Unknown) and not RESOURCE_REF.search(value):
                raise NotKnown()
            return value
        if head == "module" and self.peek("."):
            self.take(".")
            value = self.scope.module.module_object(self.take()[1])
            if isinstance(value, Unknown):
                raise NotKnown()
            return value
        raise NotKnown()

    def call(self, name: str) -> Any:
        self.take("(")
        guarded = name in ("try", "can")
        self.in_try += guarded
        try:
            args = self._arguments()
        finally:
            self.in_try -= guarded
        if name not in FUNCTIONS:
            raise NotKnown()
        return call_function(name, args)

    def _arguments(self) -> list:
        args: list = []
        while not self.peek(")"):
            try:
                args.append(self.conditional())
            except MissingAttribute:
                args.append(MISSING_ARG)
                self.skip_arg()
            except NotKnown:
                args.append(UNKNOWN_ARG)
                self.skip_arg()
            if self.peek(","):
                self.take()
            if self.peek("..."):
                raise NotKnown()
        self.take(")")
        return args

    def skip_arg(self) -> None:
        depth = 0
        while self.i < len(self.toks):
            tok = self.toks[self.i][1]
            if depth == 0 and tok in (",", ")"):
                return
            depth += tok in ("(", "[", "{")
            depth -= tok in (")", "]", "}")
            self.i += 1


def evaluate_expression(scope: Scope, text: str) -> Any:
    try:
        return ExpressionParser(scope, text).parse()
    except MissingAttribute:
        return None
    except (NotKnown, Unparsable, RecursionError):
        return scope.unknown(text)
