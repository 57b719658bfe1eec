"""``terraform validate`` of a synthesized stack against the hashicorp/aws 5.100 provider mirror (the
oldest provider spotkit supports). Tests call ``needs_terraform()`` first: it skips with the reason when
terraform or the mirror is absent."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

MIRROR_ROOT = Path("/opt/tf-plugins")
AWS_MIRROR = MIRROR_ROOT / "registry.terraform.io" / "hashicorp" / "aws"


def needs_terraform() -> None:
    if shutil.which("terraform") is None:
        pytest.skip("terraform is not on PATH")
    if not AWS_MIRROR.is_dir():
        pytest.skip(f"no hashicorp/aws provider mirror at {AWS_MIRROR}")


def terraform_validate(doc: dict, workdir: Path, provider_version: str = "5.100.0") -> subprocess.CompletedProcess:
    """Pin the provider to ``provider_version``, init from the mirror (no backend) and validate."""
    doc = json.loads(json.dumps(doc))
    doc["terraform"]["required_providers"]["aws"]["version"] = provider_version
    doc["terraform"].pop("backend", None)
    workdir.mkdir(parents=True, exist_ok=True)
    rc = workdir / "terraformrc"
    rc.write_text(f'provider_installation {{\n  filesystem_mirror {{ path = "{MIRROR_ROOT}" }}\n}}\n')
    (workdir / "main.tf.json").write_text(json.dumps(doc))
    env = {**os.environ, "TF_CLI_CONFIG_FILE": str(rc), "TF_IN_AUTOMATION": "1"}
    init = subprocess.run(["terraform", "init", "-backend=false", "-input=false", "-no-color"], cwd=workdir,
                          env=env, capture_output=True, text=True, timeout=300)
    assert init.returncode == 0, init.stdout + init.stderr
    return subprocess.run(["terraform", "validate", "-no-color"], cwd=workdir, env=env, capture_output=True,
                          text=True, timeout=300)
