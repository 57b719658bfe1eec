"""The rules from AWS's spot recommendations (SPOT013-SPOT017), each with a failing and a passing
input; the existing rules that already covered part of the issue (SPOT004, SPOT005, SPOT006, SPOT009)
on HCL; the spot / general category split in text, JSON and SARIF; and the pre-commit hook file."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from tests.test_check_hcl import good, write
from spotkit.check import run_check_on_paths
from spotkit.check.report import render_text
from spotkit.check.rules import RULES_BY_ID
from spotkit.check.sarif import to_sarif

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures" / "check"
SARIF_SCHEMA = json.loads((FIXTURES / "sarif-schema-2.1.0.json").read_text())


def run(root: Path, checkov="off"):
    return run_check_on_paths([str(root)], checkov=checkov)


def fired(report, rule_id):
    return [(f.resource, f.message) for f in report.findings if f.rule_id == rule_id and f.decided and not f.suppressed]


def overrides(*types: str) -> str:
    return "\n".join(f'      override {{\n        instance_type = "{t}"\n      }}' for t in types)


# --- SPOT013 lowest-price ------------------------------------------------------------------------------

def test_spot013_lowest_price_with_two_pools_fails(tmp_path):
    text = good(STRATEGY='"lowest-price"').replace('spot_allocation_strategy', 'spot_instance_pools = 2\n      spot_allocation_strategy')
    report = run(write(tmp_path, {"main.tf": text}))
    assert fired(report, "SPOT013") == [("aws_autoscaling_group.g", "spot group aws_autoscaling_group.g uses spot_allocation_strategy lowest-price "
                                         "over 2 pool(s): it fills the cheapest pools, the ones most likely to be reclaimed, and they are reclaimed together")]
    assert RULES_BY_ID["SPOT013"].help_uri.startswith("https://docs.aws.amazon.com/")


def test_spot013_unset_strategy_is_the_lowest_price_default(tmp_path):
    text = good().replace('spot_allocation_strategy                 = "price-capacity-optimized"', "")
    assert [r for r, _ in fired(run(write(tmp_path, {"main.tf": text})), "SPOT013")] == ["aws_autoscaling_group.g"]


def test_spot013_price_capacity_optimized_passes(tmp_path):
    assert fired(run(write(tmp_path, {"main.tf": good()})), "SPOT013") == []


def test_spot013_spot_fleet_default_fails_and_capacity_optimized_passes(tmp_path):
    fleet = {"resource": {"aws_spot_fleet_request": {"f": {"iam_fleet_role": "arn:aws:iam::1:role/f", "target_capacity": 2}}}}
    (tmp_path / "fleet.tf.json").write_text(json.dumps(fleet))
    assert [r for r, _ in fired(run_check_on_paths([str(tmp_path / "fleet.tf.json")], checkov="off"), "SPOT013")] == ["aws_spot_fleet_request.f"]
    fleet["resource"]["aws_spot_fleet_request"]["f"]["allocation_strategy"] = "priceCapacityOptimized"
    (tmp_path / "fleet.tf.json").write_text(json.dumps(fleet))
    assert fired(run_check_on_paths([str(tmp_path / "fleet.tf.json")], checkov="off"), "SPOT013") == []


# --- SPOT014 max price ---------------------------------------------------------------------------------

def test_spot014_spot_max_price_fails(tmp_path):
    text = good().replace('spot_allocation_strategy', 'spot_max_price = "0.35"\n      spot_allocation_strategy')
    assert fired(run(write(tmp_path, {"main.tf": text})), "SPOT014") == [
        ("aws_autoscaling_group.g", "aws_autoscaling_group.g sets mixed_instances_policy.instances_distribution.spot_max_price = 0.35: "
                                    "AWS interrupts the instances whenever the spot price rises above it, on top of capacity reclaims")]


def test_spot014_launch_template_max_price_fails_and_none_passes(tmp_path):
    lt = ('resource "aws_launch_template" "spot" {\n  instance_market_options {\n    market_type = "spot"\n'
          '    spot_options {\n      max_price = "0.10"\n    }\n  }\n  metadata_options {\n    http_tokens = "required"\n  }\n}\n')
    write(tmp_path, {"main.tf": good(), "spot.tf": lt})
    assert [r for r, _ in fired(run(tmp_path), "SPOT014")] == ["aws_launch_template.spot"]
    write(tmp_path, {"spot.tf": lt.replace('max_price = "0.10"', "")})
    assert fired(run(tmp_path), "SPOT014") == []


def test_spot014_unknown_price_is_undecided(tmp_path):
    text = good().replace('spot_allocation_strategy', 'spot_max_price = var.price\n      spot_allocation_strategy') + 'variable "price" {}\n'
    report = run(write(tmp_path, {"main.tf": text}))
    assert fired(report, "SPOT014") == []
    assert [f.rule_id for f in report.undecided] == ["SPOT014"]


# --- SPOT015 one family / generation --------------------------------------------------------------------

def test_spot015_sizes_of_one_gpu_family_fail(tmp_path):
    report = run(write(tmp_path, {"main.tf": good(OVERRIDES=overrides("g4dn.xlarge", "g4dn.2xlarge", "g4dn.4xlarge"))}))
    [(resource, message)] = fired(report, "SPOT015")
    assert resource == "aws_autoscaling_group.g"
    assert "one instance family (g4dn" in message and "GPU capacity is scarce" in message


def test_spot015_one_generation_of_one_family_line_fails(tmp_path):
    report = run(write(tmp_path, {"main.tf": good(OVERRIDES=overrides("m5.large", "m5a.large", "m5n.large"))}))
    assert [m for _, m in fired(report, "SPOT015")] == [
        "spot group aws_autoscaling_group.g uses one generation of one family line (m5, m5a, m5n): "
        "they are reclaimed together more often than types from different generations"]


def test_spot015_two_gpu_generations_pass(tmp_path):
    assert fired(run(write(tmp_path, {"main.tf": good(OVERRIDES=overrides("g5.xlarge", "g6.xlarge", "g5.2xlarge"))})), "SPOT015") == []


# --- rules that already existed, on HCL (capacity_rebalance, hook, deregistration delay, ECS draining) ---

def test_spot004_capacity_rebalance_off_fails_on_hcl(tmp_path):
    assert [r for r, _ in fired(run(write(tmp_path, {"main.tf": good(CAPACITY_REBALANCE="false")})), "SPOT004")] == ["aws_autoscaling_group.g"]
    assert fired(run(write(tmp_path, {"main.tf": good()})), "SPOT004") == []


def test_spot005_no_termination_hook_fails_on_hcl(tmp_path):
    assert [r for r, _ in fired(run(write(tmp_path, {"main.tf": good(HOOK="")})), "SPOT005")] == ["aws_autoscaling_group.g"]


def test_spot006_deregistration_delay_on_hcl(tmp_path):
    tg = 'resource "aws_lb_target_group" "web" {\n  port = 80\n  DELAY\n}\n'
    text = good().replace('name                = "g"', 'name = "g"\n  target_group_arns = [aws_lb_target_group.web.arn]')
    text = text.replace("on_demand_percentage_above_base_capacity = 0", "on_demand_base_capacity = 1\n      on_demand_percentage_above_base_capacity = 0")
    write(tmp_path, {"main.tf": text, "lb.tf": tg.replace("DELAY", "")})  # default: 300 s
    assert [r for r, _ in fired(run(tmp_path), "SPOT006")] == ["aws_lb_target_group.web"]
    write(tmp_path, {"lb.tf": tg.replace("DELAY", "deregistration_delay = 90")})
    assert fired(run(tmp_path), "SPOT006") == []


def test_spot009_ecs_capacity_provider_without_draining_on_hcl(tmp_path):
    cp = ('resource "aws_ecs_capacity_provider" "spot" {\n  name = "spot"\n  auto_scaling_group_provider {\n'
          '    auto_scaling_group_arn = aws_autoscaling_group.g.arn\n    managed_draining = "DRAINING"\n  }\n}\n')
    write(tmp_path, {"main.tf": good(), "ecs.tf": cp.replace('"DRAINING"', '"DISABLED"')})
    assert [r for r, _ in fired(run(tmp_path), "SPOT009")] == ["aws_ecs_capacity_provider.spot"]
    write(tmp_path, {"ecs.tf": cp.replace('"DRAINING"', '"ENABLED"')})
    assert fired(run(tmp_path), "SPOT009") == []


# --- SPOT016 / SPOT017 Karpenter NodePools --------------------------------------------------------------

def node_pool(name: str, capacity: list[str], disruption: dict | None = None) -> dict:
    spec: dict = {"template": {"spec": {"requirements": [
        {"key": "karpenter.sh/capacity-type", "operator": "In", "values": capacity},
        {"key": "karpenter.k8s.aws/instance-family", "operator": "In", "values": ["g5", "g6"]}],
        "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default"}}}}
    if disruption is not None:
        spec["disruption"] = disruption
    return {"apiVersion": "karpenter.sh/v1", "kind": "NodePool", "metadata": {"name": name}, "spec": spec}


CALM = {"consolidationPolicy": "WhenEmpty", "consolidateAfter": "5m"}


def check_pools(tmp_path: Path, *pools: dict):
    path = tmp_path / "nodepools.yaml"
    path.write_text(yaml.safe_dump_all(pools))
    return run_check_on_paths([str(path)], checkov="off")


def test_spot016_spot_only_pool_without_fallback_fails(tmp_path):
    report = check_pools(tmp_path, node_pool("gpu-spot", ["spot"], CALM))
    assert fired(report, "SPOT016") == [("NodePool/gpu-spot", "NodePool gpu-spot launches spot only and no NodePool given allows on-demand: "
                                                              "when spot capacity for its instance types runs out, pods stay pending")]


def test_spot016_mixed_pool_or_on_demand_pool_passes(tmp_path):
    assert fired(check_pools(tmp_path, node_pool("gpu", ["spot", "on-demand"], CALM)), "SPOT016") == []
    assert fired(check_pools(tmp_path, node_pool("gpu-spot", ["spot"], CALM), node_pool("gpu-od", ["on-demand"], CALM)), "SPOT016") == []


def test_spot017_default_consolidation_on_spot_fails(tmp_path):
    report = check_pools(tmp_path, node_pool("gpu", ["spot", "on-demand"]))  # no disruption block: Karpenter's defaults
    assert [m for _, m in fired(report, "SPOT017")] == [
        "NodePool gpu may launch spot and consolidates WhenEmptyOrUnderutilized after 0s: Karpenter replaces spot nodes on its "
        "own schedule on top of the interruptions AWS makes, so pods move twice as often"]


def test_spot017_calm_consolidation_or_on_demand_only_passes(tmp_path):
    assert fired(check_pools(tmp_path, node_pool("gpu", ["spot", "on-demand"], CALM)), "SPOT017") == []
    slow = {"consolidationPolicy": "WhenEmptyOrUnderutilized", "consolidateAfter": "10m"}
    assert fired(check_pools(tmp_path, node_pool("gpu", ["spot", "on-demand"], slow)), "SPOT017") == []
    assert fired(check_pools(tmp_path, node_pool("od", ["on-demand"])), "SPOT017") == []


def test_node_pools_in_a_directory_are_found_beside_terraform(tmp_path):
    write(tmp_path, {"main.tf": good(), "k8s/pools.yaml": yaml.safe_dump(node_pool("gpu-spot", ["spot"], CALM))})
    report = run(tmp_path)
    assert [r for r, _ in fired(report, "SPOT016")] == ["NodePool/gpu-spot"]


# --- categories ---------------------------------------------------------------------------------------------

ON_DEMAND_INSTANCE = 'resource "aws_instance" "bastion" {\n  ami = "ami-1"\n  instance_type = "t3.micro"\n}\n'
SPOT_INSTANCE = ('resource "aws_instance" "spot" {\n  ami = "ami-1"\n  instance_type = "t3.micro"\n'
                 '  instance_market_options {\n    market_type = "spot"\n  }\n}\n')


def test_imdsv1_on_a_plain_on_demand_instance_is_general_and_on_spot_is_spot(tmp_path):
    report = run(write(tmp_path, {"main.tf": good(), "bastion.tf": ON_DEMAND_INSTANCE, "spot.tf": SPOT_INSTANCE}))
    spot7 = {f.resource: f.category for f in report.findings if f.rule_id == "SPOT007"}
    assert spot7 == {"aws_instance.bastion": "general", "aws_instance.spot": "spot"}
    # text: two sections, the bastion under the general one
    text = render_text(report)
    general_at = text.index("General findings")
    assert text.index("SPOT007  aws_instance.bastion") > general_at > text.index("SPOT007  aws_instance.spot")
    assert text.startswith("Spot risks\n")
    # JSON: each finding says its category, the summary counts them
    doc = report.to_dict()
    assert doc["summary"]["by_category"] == {"spot": sum(1 for f in report.active if f.category == "spot"), "general": 1}
    assert {f["resource"]: f["category"] for f in doc["findings"] if f["rule_id"] == "SPOT007"} == spot7
    # SARIF: still valid, the category on each result and the rule's tags
    sarif = to_sarif(report)
    jsonschema.validate(sarif, SARIF_SCHEMA)
    results = {r["locations"][0]["logicalLocations"][0]["fullyQualifiedName"]: r for r in sarif["runs"][0]["results"]}
    assert results["aws_instance.bastion"]["properties"]["category"] == "general"
    assert results["aws_instance.spot"]["properties"]["category"] == "spot"
    rules = sarif["runs"][0]["tool"]["driver"]["rules"]
    assert all(r["helpUri"].startswith("https://") for r in rules if r["id"] != "SPOT000")


def test_undecided_and_not_inspected_in_sarif_and_json(tmp_path):
    text = good(CAPACITY_REBALANCE="var.rebalance") + 'variable "rebalance" {}\nmodule "vpc" {\n  source = "terraform-aws-modules/vpc/aws"\n}\n'
    report = run(write(tmp_path, {"main.tf": text}))
    sarif = to_sarif(report)
    jsonschema.validate(sarif, SARIF_SCHEMA)
    spot4 = [r for r in sarif["runs"][0]["results"] if r["ruleId"] == "SPOT004"][0]
    assert (spot4["level"], spot4["properties"]["decided"]) == ("note", False)
    assert spot4["message"]["text"].startswith("Could not decide: ")
    notes = sarif["runs"][0]["invocations"][0]["toolExecutionNotifications"]
    assert [n["message"]["text"].split(" ")[0] for n in notes] == ["module.vpc"]
    assert report.to_dict()["not_inspected"][0]["source"] == "terraform-aws-modules/vpc/aws"
    assert "UNDECIDED SPOT004" in render_text(report)


RECORDED_CHECKOV = FIXTURES / "checkov-output-third-party.json"


def test_general_findings_stay_out_when_checkov_runs(tmp_path, monkeypatch):
    # GIVEN checkov "installed" as a command that replays a recorded checkov 3.3.30 run
    replay = tmp_path / "checkov"
    replay.write_text(f"#!{sys.executable}\nimport sys\nsys.stdout.write(open({str(RECORDED_CHECKOV)!r}).read())\n")
    replay.chmod(replay.stat().st_mode | stat.S_IEXEC)
    config = write(tmp_path / "tf", {"main.tf": good(), "bastion.tf": ON_DEMAND_INSTANCE})
    monkeypatch.setenv("SPOTKIT_CHECKOV", str(replay))
    report = run(config, checkov="on")
    # THEN spotkit's general IMDSv1 finding is left to checkov (which has its own), and the count says so
    assert report.checkov_status == "ran"
    assert [f for f in report.findings if f.source == "spotkit" and f.category == "general"] == []
    assert report.general_left_to_checkov == 1
    assert {f.category for f in report.findings if f.source == "checkov"} == {"general"}
    # without checkov, the same finding is reported under "general"
    monkeypatch.delenv("SPOTKIT_CHECKOV")
    assert [(f.rule_id, f.category) for f in run(config).findings] == [("SPOT007", "general")]


# --- where people run it ----------------------------------------------------------------------------------

def test_pre_commit_hooks_entry_point_exists():
    # GIVEN the hook definitions / THEN each entry is the installed `spotkit` console script and a real command
    from importlib.metadata import entry_points

    from spotkit.cli.main import cli

    hooks = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    scripts = {ep.name: ep.value for ep in entry_points(group="console_scripts")}
    for hook in hooks:
        program, command = hook["entry"].split()
        assert scripts.get(program) == "spotkit.cli.main:main"
        assert f'{program} = "spotkit.cli.main:main"' in (ROOT / "pyproject.toml").read_text()
        assert command in cli.list_commands(None)
        assert hook["language"] == "python" and hook["pass_filenames"] is False
        assert "--no-checkov" in hook["args"]


def test_live_checkov_on_an_hcl_directory():
    # GIVEN checkov installed (optional extra; SPOTKIT_CHECKOV or PATH), else skipped with the reason
    from spotkit.check.checkov import find_checkov

    if find_checkov() is None:
        pytest.skip("checkov is not installed (optional extra 'check'); the replayed run above covers the merge")
    # WHEN the mixed-instances HCL directory is checked with checkov required
    report = run_check_on_paths([str(FIXTURES / "hcl" / "mixed_instances")], checkov="on")
    # THEN checkov ran its terraform framework on the directory, and its findings are general ones on the user's files
    assert report.checkov_status == "ran" and report.checkov_detail.startswith("checkov ran on 1 HCL directory")
    ours = {f.file for f in report.findings if f.source == "spotkit"}
    theirs = [f for f in report.findings if f.source == "checkov"]
    assert theirs and {f.category for f in theirs} == {"general"}
    assert {f.file for f in theirs} <= {str(p) for p in ours} | {str(Path(f)) for f in report.files}


@pytest.mark.parametrize("mode", ["karpenter", "auto_mode"])
def test_spotkit_rendered_node_pools_pass_the_karpenter_rules(tmp_path, mode):
    # GIVEN the eks_gpu stack's NodePools as `spotkit k8s render` writes them (spot pool + on-demand floor)
    from spotkit.k8s.render import render

    result = render("eks_gpu", tmp_path, {"eks_gpu": {"node_provisioning": mode}})
    assert "NodePool" in result.kinds
    report = run_check_on_paths([str(tmp_path)], checkov="off")
    # THEN the directory's NodePools are read and neither Karpenter rule fires
    assert any(r.startswith(str(tmp_path)) for r in report.files)
    assert [(f.rule_id, f.resource) for f in report.findings] == []
    # AND with the on-demand floor pool dropped, SPOT016 says the spot pool has no fallback
    floor = [p for p, k in zip(result.files, result.kinds) if k == "NodePool" and "on-demand" in Path(p).read_text()]
    for p in floor:
        Path(p).unlink()
    assert [f.rule_id for f in run_check_on_paths([str(tmp_path)], checkov="off").findings] == ["SPOT016"]


def test_k8s_check_reads_node_pools_too(tmp_path):
    # GIVEN a YAML file with a spot-only NodePool and default consolidation, as `spotkit k8s check` reads
    import subprocess

    path = tmp_path / "pools.yaml"
    path.write_text(yaml.safe_dump(node_pool("gpu-spot", ["spot"])))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-m", "spotkit.cli.main", "k8s", "check", str(path)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    # THEN both Karpenter rules warn (exit 0: warnings), each with its fix
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:2] == ["ok: 0 Job(s) checked", "1 NodePool(s) checked (NodePool/gpu-spot): 2 warning(s)"]
    assert [line.split()[1] for line in lines if line.startswith("WARNING")] == ["SPOT016", "SPOT017"]


def test_existing_rules_say_when_they_cannot_decide(tmp_path):
    # GIVEN the hook's transition, a target group's delay, a spot launch template's http_tokens and an ECS
    # provider's managed draining, each from a variable without a default
    text = good(HOOK="HOOKX").replace("HOOKX", 'initial_lifecycle_hook {\n    name = "h"\n    lifecycle_transition = var.transition\n  }')
    text = text.replace('http_tokens = "required"', "http_tokens = var.tokens")
    text = text.replace('name                = "g"', 'name = "g"\n  target_group_arns = [aws_lb_target_group.web.arn]')
    text = text.replace("on_demand_percentage_above_base_capacity = 0", "on_demand_base_capacity = 1\n      on_demand_percentage_above_base_capacity = 0")
    text += ('variable "transition" {}\nvariable "tokens" {}\nvariable "delay" {}\nvariable "draining" {}\n'
             'resource "aws_lb_target_group" "web" {\n  deregistration_delay = var.delay\n}\n'
             'resource "aws_ecs_capacity_provider" "spot" {\n  auto_scaling_group_provider {\n'
             '    auto_scaling_group_arn = aws_autoscaling_group.g.arn\n    managed_draining = var.draining\n  }\n}\n')
    report = run(write(tmp_path, {"main.tf": text}))
    # THEN none of them fires, and each says it could not decide, naming the unknown value
    assert [(f.rule_id, f.resource) for f in report.findings if f.decided] == []
    got = {f.rule_id: f.message for f in report.undecided}
    assert sorted(got) == ["SPOT005", "SPOT006", "SPOT007", "SPOT009"]
    assert "${var.transition}" in got["SPOT005"] and "${var.delay}" in got["SPOT006"]
    assert "${var.tokens}" in got["SPOT007"] and "${var.draining}" in got["SPOT009"]
