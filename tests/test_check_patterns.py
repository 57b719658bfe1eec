"""``spotkit check`` on patterns seen in public Terraform (issue 26), reproduced in small configurations
written for these tests: tests/fixtures/check/patterns (where each pattern was seen: SOURCES.md there).

- ci_agents: a module whose inputs are objects with ``optional(type, default)`` attributes (flat, an
  object inside the object, lists of objects holding objects), called with ``source = "../../"`` by two
  example roots that leave most attributes out (IMDSv2, the root device, the spot allocation strategy
  and pool count, the scratch disks and the attribute-based overrides come from the defaults);
- blue_green: a module making one spot group per color with ``for_each``, called by five module blocks;
- fleets: a spot fleet, an EC2 fleet on spot and a spot instance request.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spotkit.check import run_check_on_paths
from spotkit.check.sarif import to_sarif

PATTERNS = Path(__file__).parent / "fixtures" / "check" / "patterns"
AGENTS = PATTERNS / "ci_agents"
LINUX = AGENTS / "examples" / "linux-burst"
WINDOWS = AGENTS / "examples" / "windows-pool"
GROUP = "module.ci.aws_autoscaling_group.worker[0]"


@pytest.fixture(scope="module")
def agents_report():
    # the module directory as a whole: two example roots, each calling the module at ../../
    return run_check_on_paths([str(AGENTS)], checkov="off")


@pytest.fixture(scope="module")
def example_reports():
    # each example root on its own (so these tests read findings without needing their root)
    return {"linux": run_check_on_paths([str(LINUX)], checkov="off"),
            "windows": run_check_on_paths([str(WINDOWS)], checkov="off")}


def of_rule(report, rule_id: str):
    return [f for f in report.findings if f.rule_id == rule_id]


def test_optional_defaults_give_no_false_imdsv1_or_data_volume_finding(example_reports):
    # GIVEN the launch template reads http_tokens and the root device from an object variable whose type
    #   says optional(string, "required") and optional(string, "/dev/xvda"), and its scratch disks from an
    #   object inside that object whose list defaults to []; neither example sets http_tokens, the Linux
    #   one sets neither the root device nor scratch, the Windows one gives scratch without its disks
    # THEN the defaults apply: IMDSv2 is required (no SPOT007), the only volume is the root one (no SPOT008)
    for name, report in example_reports.items():
        assert [(f.rule_id, f.message) for f in report.findings if f.rule_id in ("SPOT007", "SPOT008")] == [], name
        assert [f.message for f in report.findings if "None" in f.message] == [], name


def test_lowest_price_from_an_optional_default_is_reported_as_written(example_reports):
    # GIVEN spot_strategy = optional(string, "lowest-price") and spot_pools = optional(number, 3), left out
    #   by the Linux example
    # THEN SPOT013 says lowest-price over 3 pools (the module's defaults), not "not set" (AWS's default)
    [message] = [f.message for f in of_rule(example_reports["linux"], "SPOT013")]
    assert f"spot group {GROUP} uses spot_allocation_strategy lowest-price over 3 pool(s):" in message
    # and the Windows example, which asks for price-capacity-optimized, gets no SPOT013
    assert of_rule(example_reports["windows"], "SPOT013") == []


def test_dynamic_override_over_a_defaulted_empty_list_is_no_phantom_override(example_reports):
    # GIVEN a second dynamic "override" over requirements = optional(list(object(...)), []), left out
    # THEN it makes no override: the types are known, and the diversity rules judge them
    #   Linux (c6a/c6i large and xlarge): SPOT015 on one generation, no SPOT002 (four types)
    assert [f.message.split(":")[0] for f in of_rule(example_reports["linux"], "SPOT015")] == [
        f"spot group {GROUP} uses one generation of one family line (c6a, c6i)"]
    assert of_rule(example_reports["linux"], "SPOT002") == []
    #   Windows (m7a.large, m7i.large): SPOT002 and SPOT015
    assert sorted(f.rule_id for f in example_reports["windows"].findings if f.rule_id in ("SPOT002", "SPOT015")) == [
        "SPOT002", "SPOT015"]


def test_two_roots_calling_one_module_keep_their_own_findings(agents_report):
    # GIVEN two example roots reaching the same module file (same file, same address)
    spot004 = of_rule(agents_report, "SPOT004")
    # THEN there is one finding per root, not one for both
    assert [f.resource for f in spot004] == [GROUP, GROUP]
    # attributed to its root, in JSON and SARIF too
    assert sorted(Path(f.root).name for f in spot004) == ["linux-burst", "windows-pool"]
    doc = agents_report.to_dict()
    assert sorted(Path(f["root"]).name for f in doc["findings"] if f["rule_id"] == "SPOT004") == ["linux-burst", "windows-pool"]
    results = [r for r in to_sarif(agents_report)["runs"][0]["results"] if r["ruleId"] == "SPOT004"]
    assert sorted(Path(r["properties"]["root"]).name for r in results) == ["linux-burst", "windows-pool"]
    assert all({"fullyQualifiedName": r["properties"]["root"], "kind": "module"} in r["locations"][0]["logicalLocations"]
               for r in results)


def test_blue_green_for_each_groups_are_distinct_findings():
    # GIVEN a module with one spot group per color (for_each over blue and green), called by five module blocks
    report = run_check_on_paths([str(PATTERNS / "blue_green")], checkov="off")
    # THEN each color of each call is its own finding, addressed as Terraform does: 10 groups
    calls = ["api_beta", "api_prod", "gpu_infer", "workers_arm", "workers_x86"]
    assert sorted(f.resource for f in of_rule(report, "SPOT004")) == [
        f'module.{call}.aws_autoscaling_group.pool["{color}"]' for call in calls for color in ("blue", "green")]
    # and only the GPU groups (g5.xlarge + g5.2xlarge) get SPOT002 and SPOT015, once per color
    assert sorted((f.rule_id, f.resource) for f in report.findings if f.rule_id in ("SPOT002", "SPOT015")) == [
        (rule, f'module.gpu_infer.aws_autoscaling_group.pool["{color}"]') for rule in ("SPOT002", "SPOT015")
        for color in ("blue", "green")]


@pytest.mark.parametrize("fixture, expected", [
    # one launch specification: one type in one zone, allocation strategy unset (lowestPrice)
    ("spot_fleet_one_pool", {("SPOT001", "aws_spot_fleet_request.batch"), ("SPOT003", "aws_spot_fleet_request.batch"),
                             ("SPOT013", "aws_spot_fleet_request.batch")}),
    # a launch template with two overrides in one subnet, lowestPrice: two types, one zone
    ("spot_fleet_template", {("SPOT002", "aws_spot_fleet_request.render"), ("SPOT003", "aws_spot_fleet_request.render"),
                             ("SPOT013", "aws_spot_fleet_request.render")}),
    # an EC2 fleet on spot over one launch template, no overrides, lowestPrice
    ("ec2_fleet_lowest_price", {("SPOT001", "aws_ec2_fleet.etl"), ("SPOT003", "aws_ec2_fleet.etl"),
                                ("SPOT013", "aws_ec2_fleet.etl")}),
    # one spot instance request: one type in one zone
    ("spot_instance_request", {("SPOT001", "aws_spot_instance_request.notebook"),
                               ("SPOT003", "aws_spot_instance_request.notebook")}),
])
def test_fleets_and_spot_requests_get_the_diversity_and_zone_rules(fixture, expected):
    # GIVEN a fleet or spot request / WHEN checked
    report = run_check_on_paths([str(PATTERNS / "fleets" / fixture)], checkov="off")
    # THEN the diversity and zone rules fire on it, decided
    got = {(f.rule_id, f.resource) for f in report.active if f.rule_id in ("SPOT001", "SPOT002", "SPOT003", "SPOT013", "SPOT015")}
    assert got == expected
    assert report.spot_capacity and not report.no_spot_capacity


def test_ec2_fleet_type_is_read_from_its_launch_template():
    # GIVEN an EC2 fleet whose only type is the instance_type of the launch template it names
    report = run_check_on_paths([str(PATTERNS / "fleets" / "ec2_fleet_lowest_price")], checkov="off")
    # THEN SPOT001 names that type
    assert [f.message.split(":")[0] for f in of_rule(report, "SPOT001")] == [
        "spot EC2 fleet aws_ec2_fleet.etl can launch only one instance type (r6i.large)"]


def test_agents_report_as_json_names_the_roots(agents_report):
    # THEN the JSON report lists the roots checked and the spot capacity found in each
    doc = json.loads(json.dumps(agents_report.to_dict(), default=str))
    assert sorted(Path(r).name for r in doc["roots"]) == ["linux-burst", "windows-pool"]
    assert doc["spot_capacity"]["found"] == 2 and doc["no_spot_capacity"] is False
