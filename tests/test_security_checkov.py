"""``spotkit check --checkov`` on spotkit's own output: every shipped stack is parsed (no parsing errors,
although each file carries ``terraform.required_version``), and every checkov finding is one the project
has accepted, with its reason written in the table of docs/security.md.

The live run needs checkov: CI installs it into ``.venv-checkov`` and exports ``SPOTKIT_CHECKOV`` (.ci/run);
elsewhere the optional ``check`` extra or ``SPOTKIT_CHECKOV=/path/to/checkov``. Without it the test skips
and says so."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from spotkit.check.checkov import _sanitized_copy, find_checkov
from spotkit.synth import synthesize

ROOT = Path(__file__).resolve().parents[1]
SECURITY_PAGE = ROOT / "docs" / "security.md"
# Where .ci/run installs checkov (its own venv); used when SPOTKIT_CHECKOV is not set.
CI_CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"

# checkov findings on the five shipped stacks with their defaults, each accepted (the reasons are in the
# table of docs/security.md; this test fails when checkov reports anything else, or when the table lacks a
# row or has one too many).
ACCEPTED = {
    "CKV2_AWS_11", "CKV2_AWS_12", "CKV2_AWS_20", "CKV2_AWS_64", "CKV_AWS_103", "CKV_AWS_116",
    "CKV_AWS_117", "CKV_AWS_119", "CKV_AWS_126", "CKV_AWS_135", "CKV_AWS_150", "CKV_AWS_158", "CKV_AWS_173",
    "CKV_AWS_184", "CKV_AWS_189", "CKV_AWS_2", "CKV_AWS_272", "CKV_AWS_338", "CKV_AWS_341", "CKV_AWS_378",
    "CKV_AWS_394", "CKV_AWS_50", "CKV_AWS_91",
    # the agent artifact bucket (its CKV2_AWS_61, a lifecycle rule, is fixed)
    "CKV_AWS_18", "CKV2_AWS_62", "CKV_AWS_144", "CKV_AWS_145",
}


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    out = tmp_path_factory.mktemp("checkov-stacks")
    return out, synthesize(None, out)


def test_every_shipped_stack_carries_required_version_and_the_checkov_copy_drops_only_that(shipped, tmp_path):
    # GIVEN the shipped stacks' Terraform JSON (each sets terraform.required_version, which checkov 3.3's
    # terraform_json parser rejects: "this method receives only dicts")
    _, paths = shipped
    for i, path in enumerate(paths):
        doc = json.loads(Path(path).read_text())
        assert isinstance(doc["terraform"]["required_version"], str)
        # WHEN spotkit makes the copy it hands to checkov
        copy, framework = _sanitized_copy(Path(path), tmp_path, i)
        scanned = json.loads(copy.read_text())
        # THEN only the terraform block's non-block settings are gone; every resource is scanned as written
        assert framework == "terraform_json"
        assert "required_version" not in scanned["terraform"]
        assert scanned["terraform"]["required_providers"] == doc["terraform"]["required_providers"]
        assert scanned["resource"] == doc["resource"] and scanned.get("data") == doc.get("data")


def test_the_security_page_gives_a_reason_for_every_accepted_finding():
    text = SECURITY_PAGE.read_text()
    rows = {rule.strip().strip("`") for line in text.splitlines() if line.startswith("| `CKV")
            for rule in line.split("|")[1].split(",")}
    assert rows == ACCEPTED


@pytest.mark.slow
def test_checkov_runs_on_spotkit_output_and_finds_only_accepted_findings(shipped):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if not env.get("SPOTKIT_CHECKOV") and CI_CHECKOV.exists():
        env["SPOTKIT_CHECKOV"] = str(CI_CHECKOV)
    if "SPOTKIT_CHECKOV" not in env and find_checkov() is None:
        pytest.skip("checkov is not installed (python3 -m venv .venv-checkov && .venv-checkov/bin/pip install "
                    "'checkov>=3.2,<4', then SPOTKIT_CHECKOV=$PWD/.venv-checkov/bin/checkov; .ci/run does this)")
    out, paths = shipped
    # WHEN spotkit check runs with checkov required
    proc = subprocess.run([sys.executable, "-m", "spotkit.cli.main", "check", str(out), "--checkov", "--format", "json",
                           "--fail-on", "never"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    # THEN checkov ran on all five files and parsed every one
    assert report["checkov"]["status"] == "ran"
    assert report["checkov"]["detail"].startswith(f"checkov ran on {len(paths)} file(s): ")
    assert "could not parse" not in report["checkov"]["detail"]
    checkov = [f for f in report["findings"] if f["source"] == "checkov"]
    assert checkov, "checkov reported nothing: it did not scan the resources"
    # AND every finding is one docs/security.md accepts, with a reason
    assert sorted({f["rule_id"] for f in checkov} - ACCEPTED) == []
    # AND the agent artifact bucket's fixed check stays fixed (a lifecycle rule expires replaced builds)
    assert not [f for f in checkov if f["rule_id"] == "CKV2_AWS_61"]
    # AND the fixed ones stay fixed: ECS launch templates keep hop limit 1 (CKV_AWS_341 only on training)
    hop = {f["file"].split("/")[-2] for f in checkov if f["rule_id"] == "CKV_AWS_341"}
    assert hop <= {"training"}
