"""``terraform validate`` (and ``plan``) of a synthesized stack against the hashicorp/aws 5.100 provider
mirror (the oldest provider spotkit supports). Tests call ``needs_terraform()`` first: it skips with the
reason when terraform or the mirror is absent."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

MIRROR_ROOT = Path("/opt/tf-plugins")
AWS_MIRROR = MIRROR_ROOT / "registry.terraform.io" / "hashicorp" / "aws"
AWS_PROVIDER = 'provider["registry.terraform.io/hashicorp/aws"]'


def needs_terraform() -> None:
    if shutil.which("terraform") is None:
        pytest.skip("terraform is not on PATH")
    if not AWS_MIRROR.is_dir():
        pytest.skip(f"no hashicorp/aws provider mirror at {AWS_MIRROR}")


def terraform_init(doc: dict, workdir: Path, provider_version: str = "5.100.0") -> dict[str, str]:
    """Write ``doc`` with the provider pinned to ``provider_version`` and no backend, init it from the
    mirror, and return the environment the next terraform commands run with."""
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
    return env


def terraform_validate(doc: dict, workdir: Path, provider_version: str = "5.100.0") -> subprocess.CompletedProcess:
    """Pin the provider to ``provider_version``, init from the mirror (no backend) and validate."""
    env = terraform_init(doc, workdir, provider_version)
    return subprocess.run(["terraform", "validate", "-no-color"], cwd=workdir, env=env, capture_output=True,
                          text=True, timeout=300)


def terraform_plan_against(doc: dict, state: dict[str, dict], workdir: Path) -> dict:
    """``terraform plan -refresh=false`` of ``doc`` against a local state holding an AWS resource at each
    address of ``state`` (``type.name`` -> its arguments, kept as the resource's attributes), as ``terraform
    show -json`` gives it. Nothing is called: give ``doc`` a provider that is only configured (fake
    credentials, every check skipped), and resources that ignore their arguments
    (``lifecycle.ignore_changes = all``) when only the addresses are under test."""
    env = terraform_init(doc, workdir)
    schemas = json.loads(subprocess.run(["terraform", "providers", "schema", "-json"], cwd=workdir, env=env,
                                        capture_output=True, text=True, timeout=300, check=True).stdout)
    schemas = schemas["provider_schemas"]["registry.terraform.io/hashicorp/aws"]["resource_schemas"]

    def instance(rtype: str, name: str, arguments: dict) -> dict:
        schema = schemas[rtype]
        return {"mode": "managed", "type": rtype, "name": name, "provider": AWS_PROVIDER,
                "instances": [{"schema_version": schema.get("version", 0), "sensitive_attributes": [],
                               "attributes": {"id": name, **_state_attributes(schema["block"], arguments)}}]}

    resources = [instance(*address.split(".", 1), arguments) for address, arguments in state.items()]
    state_file = {"version": 4, "terraform_version": "1.5.0", "serial": 1, "lineage": "spotkit-test",
                  "resources": resources}
    (workdir / "terraform.tfstate").write_text(json.dumps(state_file))
    plan = subprocess.run(["terraform", "plan", "-refresh=false", "-input=false", "-no-color", "-lock=false",
                           "-out=plan.bin"], cwd=workdir, env=env, capture_output=True, text=True, timeout=300)
    assert plan.returncode == 0, plan.stdout[-4000:] + plan.stderr[-4000:]
    shown = subprocess.run(["terraform", "show", "-json", "plan.bin"], cwd=workdir, env=env, capture_output=True,
                           text=True, timeout=300, check=True)
    return json.loads(shown.stdout)


def _state_attributes(block: dict, arguments: dict) -> dict:
    """A resource's arguments as its state holds them: attributes as they are, nested blocks as lists (or
    an object for a ``single`` block), meta-arguments (``lifecycle``, ``depends_on``) left out."""
    out = {}
    for key, value in arguments.items():
        if key in block.get("attributes", {}):
            out[key] = value
        elif key in block.get("block_types", {}):
            nested = block["block_types"][key]
            items = [_state_attributes(nested["block"], v) for v in (value if isinstance(value, list) else [value])]
            out[key] = items[0] if nested["nesting_mode"] == "single" else items
    return out
