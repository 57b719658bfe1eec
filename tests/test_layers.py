"""The layers' allowed directions, as import-linter contracts (pyproject.toml ``[tool.importlinter]``).

import-linter reads a package from its folder; spotkit's subpackages ``constructs`` and ``stacks`` live in
other folders of the repository (``modules/``, ``stacks/``), so the check runs on a copy laid out as the
wheel installs it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).parent / "lint-imports"


def installed_layout(dest: Path) -> Path:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "toolkit", dest / "spotkit", ignore=ignore)
    shutil.copytree(ROOT / "modules", dest / "spotkit" / "constructs", ignore=ignore)
    shutil.copytree(ROOT / "stacks", dest / "spotkit" / "stacks", ignore=ignore)
    return dest


def test_every_import_contract_is_kept(tmp_path):
    if not LINT.is_file():
        pytest.skip(f"import-linter is not installed beside {sys.executable} (the dev extra brings it)")
    # GIVEN the package laid out as installed
    layout = installed_layout(tmp_path / "site")
    # WHEN import-linter checks the contracts of pyproject.toml
    done = subprocess.run([str(LINT), "--config", str(ROOT / "pyproject.toml"), "--no-cache"], cwd=layout,
                          env={**os.environ, "PYTHONPATH": str(layout)}, capture_output=True, text=True, timeout=600)
    # THEN every contract is kept (the output names the chain of imports that breaks one)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert "BROKEN" not in done.stdout and done.stdout.count("KEPT") == 5, done.stdout[-3000:]
