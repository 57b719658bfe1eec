"""One import name of spotkit's own: the repository's toolkit/, modules/ and stacks/ install as ``spotkit``,
``spotkit.constructs`` and ``spotkit.stacks``, and nothing else of spotkit lands in site-packages."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"toolkit": "spotkit", "modules": "spotkit.constructs", "stacks": "spotkit.stacks"}


def _pyproject() -> dict:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - the 3.10 floor
        import tomli as tomllib
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_package_folder_is_listed_under_its_spotkit_name():
    # GIVEN the package folders of the repository
    found = set()
    for folder, name in FOLDERS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join((name, *rel)))
    setuptools = _pyproject()["tool"]["setuptools"]
    # THEN the wheel's package list is exactly them (a folder left out would be missing from the wheel)
    assert sorted(setuptools["packages"]) == sorted(found)
    assert setuptools["package-dir"] == {name: folder for folder, name in FOLDERS.items()}
    assert _pyproject()["project"]["scripts"] == {"spotkit": "spotkit.cli.main:main"}


def test_no_code_imports_the_repository_folder_names():
    # GIVEN every Python file of the product, the tests, the benches and the examples
    bad = []
    for path in ROOT.glob("**/*.py"):
        if any(part.startswith(".") or part in ("node_modules", "site") for part in path.relative_to(ROOT).parts):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else []
            bad += [f"{path.relative_to(ROOT)}:{node.lineno}: {n}" for n in names
                    if n.split(".")[0] in FOLDERS]
    # THEN nothing imports toolkit, modules or stacks: those names would collide in site-packages
    assert bad == []


def test_module_names_in_strings_are_spotkit_names():
    # `python -m toolkit.x`, mock.patch("modules.y"), the Lambda handler "toolkit.z": a dotted name in a string
    pattern = re.compile(r"[\"'](?:toolkit|modules|stacks)\.[a-z_]+")
    bad = [f"{p.relative_to(ROOT)}" for folder in ("toolkit", "modules", "stacks", "tests", "bench", "examples")
           for p in (ROOT / folder).rglob("*.py") if p != Path(__file__).resolve() and pattern.search(p.read_text())]
    # and in what is not Python: the cdktf app, the docs' generated CLI reference, the Makefile, CI
    bad += [name for name in ("cdktf.json", "Makefile", ".ci/run", "mkdocs.yml", "docs/cli.md")
            if re.search(r"(?:-m |:module: |from |import )(?:toolkit|modules|stacks)\.", (ROOT / name).read_text())]
    assert bad == []
