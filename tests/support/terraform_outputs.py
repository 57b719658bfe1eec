"""A stack's working directory whose Terraform state holds only outputs: for commands that read a stack's
outputs (``--stack``) without deploying it. Real ``terraform init`` + ``apply``; a configuration of outputs
only needs no provider."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path


def apply_outputs_only(workdir: Path, outputs: dict[str, str]) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "cdk.tf.json").write_text(json.dumps({"output": {k: {"value": v} for k, v in outputs.items()}}))
    for args in (["init", "-input=false", "-no-color"], ["apply", "-auto-approve", "-input=false", "-no-color"]):
        done = subprocess.run(["terraform", *args], cwd=workdir, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
    return workdir
