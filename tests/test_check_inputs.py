"""``spotkit check`` on configurations spotkit did not write: hand-written Terraform JSON in the style
of a terraform-aws-modules/autoscaling user, and the plan of the same configuration in
``terraform show -json`` format (recorded from terraform 1.11 + hashicorp/aws 5.100, and re-made live
when terraform and the provider mirror are present). Also: suppressions and bad inputs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.tf_validate import MIRROR_ROOT, needs_terraform
from spotkit.check import run_check_on_paths
from spotkit.check.loader import block, blocks, load_graph
from spotkit.errors import ConfigError, ToolkitError

FIXTURES = Path(__file__).parent / "fixtures" / "check"
THIRD_PARTY = FIXTURES / "third_party_autoscaling.tf.json"
THIRD_PARTY_PLAN = FIXTURES / "third_party_autoscaling.plan.json"

EXPECTED_THIRD_PARTY = [
    ("SPOT002", "warning", "aws_autoscaling_group.this", False),
    ("SPOT003", "error", "aws_autoscaling_group.this", True),  # suppressed by its spotkit:skip-check tag
    ("SPOT004", "warning", "aws_autoscaling_group.this", False),
    ("SPOT005", "error", "aws_autoscaling_group.this", False),
    ("SPOT006", "error", "aws_lb_target_group.web", False),
    ("SPOT007", "error", "aws_launch_template.this", False),
    ("SPOT008", "warning", "aws_launch_template.this", False),
    ("SPOT010", "warning", "aws_autoscaling_group.this", False),
    ("SPOT011", "warning", "aws_autoscaling_group.this", False),
    ("SPOT015", "warning", "aws_autoscaling_group.this", False),  # t3.micro + t3a.micro: one generation
]


def summary(report):
    return sorted((f.rule_id, f.severity, f.resource, f.suppressed) for f in report.findings)


def test_third_party_terraform_json():
    # GIVEN hand-written Terraform JSON (lists for nested blocks, a spot fleet behind an ALB)
    # WHEN checked
    report = run_check_on_paths([str(THIRD_PARTY)], checkov="off")
    # THEN each spot mistake in it is found once, and the tagged one is suppressed with its reason
    assert summary(report) == EXPECTED_THIRD_PARTY
    suppressed = report.suppressed[0]
    assert (suppressed.suppression_reason, suppressed.suppression_kind) == ("staging fleet pinned to one AZ next to its database", "inSource")
    assert [f.rule_id for f in report.errors] == ["SPOT005", "SPOT006", "SPOT007"]


def test_plan_json_gives_the_same_findings():
    # GIVEN the plan of the same configuration (computed ids absent, references only in 'configuration')
    report = run_check_on_paths([str(THIRD_PARTY_PLAN)], checkov="off")
    # THEN the findings are the same as from the configuration itself
    assert summary(report) == EXPECTED_THIRD_PARTY


def test_loader_normalizes_single_blocks_and_lists():
    # GIVEN cdk.tf.json-style objects (good.tf.json) and plan-style lists (the plan)
    good = {r.address: r for r in load_graph([str(FIXTURES / "good.tf.json")]).resources}
    plan = {r.address: r for r in load_graph([str(THIRD_PARTY_PLAN)]).resources}
    # THEN block() reads both the same way, and plan references come from the configuration
    assert block(good["aws_autoscaling_group.train"].values, "mixed_instances_policy", "instances_distribution")["spot_allocation_strategy"] == "price-capacity-optimized"
    assert block(plan["aws_autoscaling_group.this"].values, "mixed_instances_policy", "instances_distribution")["spot_allocation_strategy"] == "capacity-optimized"
    assert [o["instance_type"] for o in blocks(block(plan["aws_autoscaling_group.this"].values, "mixed_instances_policy", "launch_template"), "override")] == ["t3.micro", "t3a.micro"]
    assert plan["aws_autoscaling_group.this"].attr_refs["target_group_arns"] == {"aws_lb_target_group.web"}
    assert good["aws_autoscaling_group.web"].attr_refs["target_group_arns"] == {"aws_lb_target_group.web"}


def _tf_env(workdir: Path) -> dict:
    rc = workdir / "terraformrc"
    rc.write_text(f'provider_installation {{\n  filesystem_mirror {{ path = "{MIRROR_ROOT}" }}\n}}\n')
    return {**os.environ, "TF_CLI_CONFIG_FILE": str(rc), "TF_IN_AUTOMATION": "1"}


@pytest.mark.terraform
def test_live_terraform_plan_json(tmp_path):
    # GIVEN terraform and the provider mirror, and the third-party configuration (fake credentials, skip_* flags)
    needs_terraform()
    shutil.copy(THIRD_PARTY, tmp_path / "main.tf.json")
    env = _tf_env(tmp_path)
    for args in (["init", "-input=false", "-no-color"], ["plan", "-input=false", "-no-color", "-refresh=false", "-out=plan.bin"]):
        done = subprocess.run(["terraform", *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
    shown = subprocess.run(["terraform", "show", "-json", "plan.bin"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    (tmp_path / "plan.json").write_text(shown.stdout)
    # WHEN the real plan JSON is checked
    report = run_check_on_paths([str(tmp_path / "plan.json")], checkov="off")
    # THEN it gives the findings of the recorded plan
    assert summary(report) == EXPECTED_THIRD_PARTY


def test_directory_input_finds_every_tf_json(tmp_path):
    # GIVEN a cdktf.out-like tree with two stacks
    for name in ("a", "b"):
        (tmp_path / "stacks" / name).mkdir(parents=True)
        shutil.copy(THIRD_PARTY, tmp_path / "stacks" / name / "cdk.tf.json")
    report = run_check_on_paths([str(tmp_path)], checkov="off")
    # THEN both files are checked, each finding tied to its file
    assert report.files == [str(tmp_path / "stacks" / "a" / "cdk.tf.json"), str(tmp_path / "stacks" / "b" / "cdk.tf.json")]
    assert len(report.findings) == 2 * len(EXPECTED_THIRD_PARTY)


def test_missing_path_and_bad_json_errors(tmp_path):
    with pytest.raises(ToolkitError) as missing:
        run_check_on_paths([str(tmp_path / "nope.tf.json")], checkov="off")
    assert missing.value.message == f"{tmp_path / 'nope.tf.json'} does not exist"
    bad = tmp_path / "bad.tf.json"
    bad.write_text("{not json")
    with pytest.raises(ToolkitError) as invalid:
        run_check_on_paths([str(bad)], checkov="off")
    assert invalid.value.message == f"{bad} is not valid JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"
    (tmp_path / "empty").mkdir()
    with pytest.raises(ToolkitError) as empty:
        run_check_on_paths([str(tmp_path / "empty")], checkov="off")
    assert empty.value.message == f"{tmp_path / 'empty'} holds no .tf or *.tf.json file (nor a Karpenter NodePool)"


def _with(tmp_path: Path, change) -> str:
    doc = json.loads(THIRD_PARTY.read_text())
    change(doc["resource"])
    path = tmp_path / "main.tf.json"
    path.write_text(json.dumps(doc))
    return str(path)


def test_suppression_from_config_with_glob():
    # GIVEN a config suppression of SPOT007 on every launch template, with a reason
    config = {"check": {"suppress": [{"id": "SPOT007", "resource": "aws_launch_template.*", "reason": "IMDSv1 needed by a legacy agent until Q3"}]}}
    report = run_check_on_paths([str(THIRD_PARTY)], config=config, checkov="off")
    # THEN that finding is kept as suppressed with the reason, and no longer fails the check
    hit = [f for f in report.findings if f.rule_id == "SPOT007"][0]
    assert (hit.suppressed, hit.suppression_reason, hit.suppression_kind) == (True, "IMDSv1 needed by a legacy agent until Q3", "external")
    assert [f.rule_id for f in report.errors] == ["SPOT005", "SPOT006"]


def test_suppression_without_reason_is_an_error(tmp_path):
    # GIVEN a tag suppression with no reason, and a config one with none
    def change(res):
        res["aws_lb_target_group"]["web"]["tags"] = {"spotkit:skip-check": "SPOT006"}
    config = {"check": {"suppress": [{"id": "SPOT005", "resource": "aws_autoscaling_group.this"}]}}
    report = run_check_on_paths([_with(tmp_path, change)], config=config, checkov="off")
    # THEN nothing is suppressed and each bad suppression is a SPOT000 error with the exact message
    assert report.suppressed[0].rule_id == "SPOT003"  # only the valid tag of the fixture
    assert [f.message for f in report.findings if f.rule_id == "SPOT000"] == [
        "spotkit:skip-check on aws_lb_target_group.web suppresses SPOT006 without a reason",
        "check.suppress[0] suppresses SPOT005 on aws_autoscaling_group.this without a reason"]
    assert "SPOT006" in [f.rule_id for f in report.errors]


def test_suppression_in_json_comment_field(tmp_path):
    # GIVEN the Terraform JSON comment field "//" holding two suppressions
    def change(res):
        res["aws_launch_template"]["this"]["//"] = {"spotkit:skip-check": ["SPOT007: vendor AMI without IMDSv2", "SPOT008: scratch volume"]}
    report = run_check_on_paths([_with(tmp_path, change)], checkov="off")
    assert sorted((f.rule_id, f.suppression_reason) for f in report.suppressed) == [
        ("SPOT003", "staging fleet pinned to one AZ next to its database"),
        ("SPOT007", "vendor AMI without IMDSv2"), ("SPOT008", "scratch volume")]


def test_suppression_naming_no_rule_and_bad_config_shape(tmp_path):
    def change(res):
        res["aws_lb_target_group"]["web"]["tags"] = {"spotkit:skip-check": "all: too noisy"}
    report = run_check_on_paths([_with(tmp_path, change)], checkov="off")
    assert [f.message for f in report.findings if f.rule_id == "SPOT000"] == [
        "spotkit:skip-check on aws_lb_target_group.web names 'all', not a rule id (SPOT001..., CKV_AWS_...)"]
    with pytest.raises(ConfigError) as bad:
        run_check_on_paths([str(THIRD_PARTY)], config={"check": {"suppress": [{"id": "SPOT001", "why": "x"}]}}, checkov="off")
    assert bad.value.message == "check.suppress[0].why: unknown setting"


def test_check_before_plan_blocks_on_errors_only():
    # GIVEN what 'spotkit plan' calls before planning
    from spotkit.check import CheckFailed, check_before_plan

    # WHEN the configuration is clean THEN it returns the report and its one-line summary
    report = check_before_plan([FIXTURES / "good.tf.json"])
    assert report.summary_line() == "check: 1 file(s): 0 error(s), 0 warning(s), 0 info, 0 suppressed"
    # WHEN it has errors THEN planning stops with the rules that failed
    with pytest.raises(CheckFailed) as failed:
        check_before_plan([THIRD_PARTY])
    assert failed.value.message == "check found 3 finding(s) at or above error: SPOT005, SPOT006, SPOT007"
