"""Units a reader can hold: no function in toolkit/, modules/ or stacks/ runs over 60 lines (from its ``def``
to its last line) unless its docstring says why, in a paragraph starting ``Long:`` (a click command's
options one per line, resources in the order Terraform shows them). An AST scan of the sources."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("toolkit", "modules", "stacks")
LIMIT = 60


def _long_functions():
    for folder in SCANNED:
        for path in sorted((ROOT / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    length = node.end_lineno - node.lineno + 1
                    if length > LIMIT:
                        yield path.relative_to(ROOT).as_posix(), node, length


def _reason(node: ast.AST) -> str:
    doc = ast.get_docstring(node) or ""
    for paragraph in doc.replace("\f", "\n\n").split("\n\n"):
        text = " ".join(paragraph.split())
        if text.startswith("Long:"):
            return text[len("Long:"):].strip()
    return ""


def test_every_function_over_60_lines_says_why():
    # GIVEN every function of the product's sources WHEN one is longer than the limit
    unexplained = [f"{path}:{node.lineno} {node.name} ({length} lines)"
                   for path, node, length in _long_functions() if len(_reason(node)) < 20]
    # THEN its docstring gives the reason (split it along a seam otherwise)
    assert unexplained == [], "\n".join(unexplained)


def test_the_scan_sees_a_long_function_and_its_reason():
    # GIVEN a long function without and with a reason WHEN scanned the same way THEN only the first is flagged
    body = "\n".join(f"    x{i} = {i}" for i in range(LIMIT))
    bare = ast.parse(f"def f():\n{body}\n").body[0]
    told = ast.parse(f'def g():\n    """Does g.\n\n    Long: one assignment per line, read top to bottom."""\n{body}\n').body[0]
    assert bare.end_lineno - bare.lineno + 1 > LIMIT
    assert _reason(bare) == "" and _reason(told) == "one assignment per line, read top to bottom."
