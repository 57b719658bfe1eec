"""The same stack code on HashiCorp's cdktf 0.21: what bench/synth compares spotkit against.

spotkit's stacks import ``cdktn`` and the service modules of ``cdktn_aws``
(``from cdktn_aws.iam import AwsRole as IamRole``; nested blocks as ``IamRole.InlinePolicyProperty``).
A cdktf user has ``cdktf`` and ``cdktf_cdktf_provider_aws`` (one Python module per resource,
``from cdktf_cdktf_provider_aws.iam_role import IamRole``; nested blocks as ``IamRoleInlinePolicy``).
``write_baseline_copy`` copies stacks/, modules/ and toolkit/, renames ``cdktn`` to ``cdktf`` and writes
a small ``cdktn_aws`` package into the copy whose service modules re-export cdktf's classes under
cdktn-aws's names, so the stack code runs unchanged on cdktf's engine and bindings. The mapping is
derived from the two bindings' sources (the Terraform type each class represents), not kept by hand.
"""

from __future__ import annotations

import ast
import re
import shutil
from pathlib import Path

LINK = re.compile(r"^class (\w+)\(\n(?:.*\n){1,4}?\s*jsii_type=\"[^\"]+\",\n\):\n    '''\(experimental\) Represents "
                  r"a \{@link https://registry\.terraform\.io/providers/hashicorp/aws/[\d.]+/docs/"
                  r"(resources|data-sources)/(\w+) ", re.M)


def _camel(module: str) -> str:
    return "".join(part.capitalize() for part in module.split("_"))


def terraform_types(cdktn_aws_dir: Path, service: str) -> dict[str, tuple[str, str]]:
    """cdktn-aws class name -> (resources|data-sources, short Terraform type) for one service module."""
    text = (cdktn_aws_dir / service / "__init__.py").read_text()
    return {m.group(1): (m.group(2), m.group(3)) for m in LINK.finditer(text)}


def used_names(source_dirs: list[Path]) -> dict[str, dict[str, set[str]]]:
    """service -> class name -> the nested ``XProperty`` names the code uses on it."""
    used: dict[str, dict[str, set[str]]] = {}
    for directory in source_dirs:
        for path in directory.rglob("*.py"):
            tree = ast.parse(path.read_text())
            aliases: dict[str, tuple[str, str]] = {}
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("cdktn_aws."):
                    service = node.module.split(".", 1)[1]
                    for alias in node.names:
                        used.setdefault(service, {}).setdefault(alias.name, set())
                        aliases[alias.asname or alias.name] = (service, alias.name)
            for node in ast.walk(tree):
                if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                        and node.value.id in aliases and node.attr.endswith("Property")):
                    service, name = aliases[node.value.id]
                    used[service][name].add(node.attr)
    return used


def _old_module(kind: str, short: str, provider_dir: Path) -> str:
    if short == "provider":
        return "provider"
    module = ("data_aws_" if kind == "data-sources" else "") + short
    if not (provider_dir / module).is_dir():
        raise LookupError(f"cdktf's bindings have no module {module}")
    return module


def _old_classes(provider_dir: Path, module: str) -> list[str]:
    text = (provider_dir / module / "__init__.py").read_text()
    return re.findall(r"^class (\w+)[(:]", text, re.M)


def shim_module(service: str, names: dict[str, set[str]], cdktn_aws_dir: Path, provider_dir: Path) -> str:
    types = terraform_types(cdktn_aws_dir, service) if service != "provider" else {"AwsProvider": ("resources", "provider")}
    lines = [f'"""cdktn_aws.{service} for the cdktf 0.21 baseline: cdktf\'s classes under cdktn-aws\'s names."""']
    for name in sorted(names):
        kind, short = types[name]
        module = _old_module(kind, short, provider_dir)
        classes = _old_classes(provider_dir, module)
        base = "AwsProvider" if module == "provider" else _camel(module)
        # cdktf suffixes "A" to a resource class that would clash with a nested block's name
        resource = base + "A" if base + "A" in classes else base
        lines.append(f"from cdktf_cdktf_provider_aws.{module} import {resource} as {name}")
        for prop in sorted(names[name]):
            leaf = prop[: -len("Property")]
            candidates = sorted((c for c in classes if c.startswith(base)
                                 and (c.endswith(leaf) or c.endswith(leaf + "A"))
                                 and c not in (resource, resource + "Config")), key=len)
            if not candidates:
                raise LookupError(f"no cdktf class for {name}.{prop} in {module}")
            lines.append(f"from cdktf_cdktf_provider_aws.{module} import {candidates[0]} as _{name}_{prop}")
            lines.append(f"{name}.{prop} = _{name}_{prop}")
    return "\n".join(lines) + "\n"


def write_baseline_copy(root: Path, dest: Path, cdktn_aws_dir: Path, provider_dir: Path) -> Path:
    # laid out as the installed package is: toolkit/ as spotkit, modules/ and stacks/ inside it
    for package, target in (("toolkit", "spotkit"), ("modules", "spotkit/constructs"), ("stacks", "spotkit/stacks")):
        shutil.copytree(root / package, dest / target, ignore=shutil.ignore_patterns("__pycache__"))
    code = [dest / "spotkit" / "stacks", dest / "spotkit" / "constructs"]
    used = used_names(code)
    for directory in code:
        for path in directory.rglob("*.py"):
            path.write_text(re.sub(r"\bcdktn\b", "cdktf", path.read_text()))
    shim = dest / "cdktn_aws"
    shim.mkdir()
    (shim / "__init__.py").write_text('"""cdktn-aws names over cdktf 0.21 bindings (bench/cdktf_baseline.py)."""\n')
    for service, names in used.items():
        (shim / f"{service}.py").write_text(shim_module(service, names, cdktn_aws_dir, provider_dir))
    return dest
