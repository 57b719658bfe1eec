"""One failing and one passing input per spotkit check rule.

The passing input is tests/fixtures/check/good.tf.json, a hand-written spot configuration that
follows every rule; each failing input breaks exactly one thing in a copy of it.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from spotkit.check import run_check_on_paths
from spotkit.check.rules import RULES

FIXTURES = Path(__file__).parent / "fixtures" / "check"
GOOD = json.loads((FIXTURES / "good.tf.json").read_text())


def check(tmp_path: Path, change=None) -> list:
    doc = copy.deepcopy(GOOD)
    if change:
        change(doc["resource"])
    path = tmp_path / "main.tf.json"
    path.write_text(json.dumps(doc))
    return run_check_on_paths([str(path)], checkov="off").findings


def messages(findings, rule_id: str) -> list[str]:
    return [f"{f.resource}: {f.message}" for f in findings if f.rule_id == rule_id and not f.suppressed and f.decided]


def undecided(findings, rule_id: str) -> list[str]:
    return [f"{f.resource}: {f.message}" for f in findings if f.rule_id == rule_id and not f.decided]


def test_good_configuration_passes_every_rule(tmp_path):
    # GIVEN a spot configuration that follows every rule / WHEN checked
    findings = check(tmp_path)
    # THEN no rule fires
    assert [(f.rule_id, f.resource) for f in findings] == []


def test_rule_ids_are_stable_and_unique():
    # GIVEN the rule table / THEN ids run SPOT001..SPOT017 with a known severity, a fix and a documentation link each
    assert [r.id for r in RULES] == [f"SPOT{i:03d}" for i in range(1, 18)]
    assert all(r.help_uri and r.help_uri.startswith("https://") for r in RULES)
    assert {r.severity for r in RULES} <= {"error", "warning", "info"}
    assert all(r.fix and r.title for r in RULES)


def test_each_rule_lives_in_its_own_file_and_the_registry_is_built_from_them():
    # GIVEN the rule files of toolkit/check/rules (spotNNN_<what>.py)
    import importlib

    import spotkit.check.rules as registry

    files = sorted(p.stem for p in Path(registry.__file__).parent.glob("spot[0-9][0-9][0-9]_*.py"))
    # THEN each holds the metadata of the rule its name says, and the registry is exactly those rules, each with
    # its file's check
    assert [f[:7].upper() for f in files] == [r.id for r in RULES]
    for name, rule in zip(files, RULES):
        module = importlib.import_module(f"spotkit.check.rules.{name}")
        assert (module.RULE.id, module.RULE.title, rule.check) == (rule.id, rule.title, module.check)


def test_k8s_reads_node_pools_without_importing_check():
    # GIVEN the k8s package, which spotkit.check reads NodePools through / THEN no module of it imports spotkit.check
    # (the dependency goes one way: check -> k8s), not even inside a function
    import ast

    k8s = Path(__file__).resolve().parents[1] / "toolkit" / "k8s"
    imports = []
    for path in sorted(k8s.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                imports += [(path.name, node.module)] + [(path.name, f"{node.module}.{a.name}") for a in node.names]
            elif isinstance(node, ast.Import):
                imports += [(path.name, a.name) for a in node.names]
    assert imports, "no imports read: the path is wrong"
    assert [(f, m) for f, m in imports if m == "spotkit.check" or m.startswith("spotkit.check.")] == []


def _types(types):
    def change(res):
        res["aws_autoscaling_group"]["train"]["mixed_instances_policy"]["launch_template"]["override"] = [{"instance_type": t} for t in types]
    return change


def test_spot001_single_instance_type(tmp_path):
    # GIVEN a spot group with one instance type / WHEN checked
    found = messages(check(tmp_path, _types(["g5.xlarge"])), "SPOT001")
    # THEN SPOT001 names the group and the type
    assert found == ["aws_autoscaling_group.train: spot group aws_autoscaling_group.train can launch only one instance type "
                     "(g5.xlarge): when that spot pool is reclaimed, nothing replaces it"]


def test_spot001_attribute_based_selection_passes(tmp_path):
    # GIVEN attribute-based instance requirements instead of a list
    def change(res):
        res["aws_autoscaling_group"]["train"]["mixed_instances_policy"]["launch_template"]["override"] = [
            {"instance_requirements": {"vcpu_count": {"min": 4}, "memory_mib": {"min": 16384}}}]
    # THEN neither type-count rule fires
    findings = check(tmp_path, change)
    assert messages(findings, "SPOT001") == [] and messages(findings, "SPOT002") == []


def test_spot002_two_instance_types(tmp_path):
    found = messages(check(tmp_path, _types(["g5.xlarge", "g6.xlarge"])), "SPOT002")
    assert found == ["aws_autoscaling_group.train: spot group aws_autoscaling_group.train has 2 instance types "
                     "(g5.xlarge, g6.xlarge); losing one spot pool halves the choice"]


def test_spot002_on_demand_group_is_not_judged(tmp_path):
    # GIVEN the all-on-demand ECS group with one type (fixture) / THEN no type rule fires on it
    findings = check(tmp_path)
    assert [f for f in findings if f.resource == "aws_autoscaling_group.ecs_od"] == []


@pytest.mark.parametrize("subnets", [["${aws_subnet.a.id}"], ["${aws_subnet.a.id}", "${aws_subnet.a2.id}"], ["subnet-1"]])
def test_spot003_single_az(tmp_path, subnets):
    # GIVEN one subnet, or two subnets in the same AZ, or one literal subnet id
    def change(res):
        res["aws_autoscaling_group"]["train"]["vpc_zone_identifier"] = subnets
    # THEN SPOT003 fires
    assert messages(check(tmp_path, change), "SPOT003") == [
        "aws_autoscaling_group.train: spot group aws_autoscaling_group.train uses a single availability zone: "
        "one zone's spot pools are all it can draw from"]


def test_spot003_unknown_subnet_list_is_not_guessed(tmp_path):
    # GIVEN subnets from a module output (any number) / THEN the rule does not fire, and says it could not decide
    def change(res):
        res["aws_autoscaling_group"]["train"]["vpc_zone_identifier"] = "${module.vpc.private_subnets}"
    findings = check(tmp_path, change)
    assert messages(findings, "SPOT003") == []
    assert undecided(findings, "SPOT003") == ["aws_autoscaling_group.train: the subnets of spot group aws_autoscaling_group.train are not known "
                                              "before apply (a module output, splat or expression): could not count its availability zones"]


@pytest.mark.parametrize("value", [False, "false", None])
def test_spot004_capacity_rebalance_off(tmp_path, value):
    def change(res):
        if value is None:
            del res["aws_autoscaling_group"]["train"]["capacity_rebalance"]  # AWS default: off
        else:
            res["aws_autoscaling_group"]["train"]["capacity_rebalance"] = value
    assert messages(check(tmp_path, change), "SPOT004") == [
        "aws_autoscaling_group.train: spot group aws_autoscaling_group.train has capacity_rebalance off: it waits for "
        "the 2-minute notice instead of replacing at-risk instances early"]


def test_spot005_no_termination_hook(tmp_path):
    def change(res):
        del res["aws_autoscaling_group"]["train"]["initial_lifecycle_hook"]
        del res["aws_autoscaling_lifecycle_hook"]
    found = messages(check(tmp_path, change), "SPOT005")
    assert found == [
        "aws_autoscaling_group.train: spot group aws_autoscaling_group.train has no autoscaling:EC2_INSTANCE_TERMINATING "
        "lifecycle hook: instances are terminated without time to drain or checkpoint",
        "aws_autoscaling_group.web: spot group aws_autoscaling_group.web has no autoscaling:EC2_INSTANCE_TERMINATING "
        "lifecycle hook: instances are terminated without time to drain or checkpoint"]


def test_spot005_launch_hook_does_not_count_and_ecs_draining_does(tmp_path):
    # GIVEN a launching hook only on train, and the ECS group whose capacity provider drains it
    def change(res):
        res["aws_autoscaling_group"]["train"]["initial_lifecycle_hook"][0]["lifecycle_transition"] = "autoscaling:EC2_INSTANCE_LAUNCHING"
    found = messages(check(tmp_path, change), "SPOT005")
    # THEN only train is flagged (ecs has no hook of its own but ECS managed draining adds one)
    assert [m.split(":")[0] for m in found] == ["aws_autoscaling_group.train"]


def test_spot005_hook_resource_matched_by_literal_name(tmp_path):
    def change(res):
        res["aws_autoscaling_lifecycle_hook"]["web_drain"]["autoscaling_group_name"] = "web"
    assert messages(check(tmp_path, change), "SPOT005") == []


@pytest.mark.parametrize("delay,shown", [("300", 300), (None, 300)])
def test_spot006_deregistration_delay_longer_than_notice(tmp_path, delay, shown):
    def change(res):
        if delay is None:
            del res["aws_lb_target_group"]["web"]["deregistration_delay"]  # provider default 300
        else:
            res["aws_lb_target_group"]["web"]["deregistration_delay"] = delay
    assert messages(check(tmp_path, change), "SPOT006") == [
        f"aws_lb_target_group.web: target group aws_lb_target_group.web waits {shown} s to deregister spot targets of "
        "aws_autoscaling_group.web; the spot notice is 120 s, so in-flight requests are cut instead of drained"]


def test_spot006_ecs_service_target_group(tmp_path):
    def change(res):
        res["aws_lb_target_group"]["api"]["deregistration_delay"] = 200
    assert messages(check(tmp_path, change), "SPOT006") == [
        "aws_lb_target_group.api: target group aws_lb_target_group.api waits 200 s to deregister spot tasks of "
        "aws_ecs_service.api; the spot notice is 120 s, so in-flight requests are cut instead of drained"]


@pytest.mark.parametrize("tokens,shown", [("optional", "optional"), (None, "not set, so optional")])
def test_spot007_imdsv1_allowed(tmp_path, tokens, shown):
    def change(res):
        meta = res["aws_launch_template"]["lt"]["metadata_options"]
        if tokens is None:
            del meta["http_tokens"]
        else:
            meta["http_tokens"] = tokens
    assert messages(check(tmp_path, change), "SPOT007") == [
        f"aws_launch_template.lt: aws_launch_template.lt allows IMDSv1 (metadata_options.http_tokens is {shown}): "
        "any SSRF can read the instance role's credentials"]


def test_spot007_imds_disabled_passes(tmp_path):
    def change(res):
        res["aws_launch_template"]["lt"]["metadata_options"] = {"http_endpoint": "disabled"}
    assert messages(check(tmp_path, change), "SPOT007") == []


def test_spot008_data_volume_deleted_without_snapshot_policy(tmp_path):
    def change(res):
        res["aws_launch_template"]["lt"]["block_device_mappings"][1]["ebs"]["delete_on_termination"] = "true"
        res["aws_dlm_lifecycle_policy"]["data"]["policy_details"]["target_tags"] = {"app": "other"}
    assert messages(check(tmp_path, change), "SPOT008") == [
        "aws_launch_template.lt: aws_launch_template.lt deletes data volume(s) /dev/sdf when a spot instance is terminated, "
        "and no DLM snapshot policy targets their tags: their data is lost on interruption"]


def test_spot008_deleted_volume_with_matching_snapshot_policy_passes(tmp_path):
    def change(res):
        del res["aws_launch_template"]["lt"]["block_device_mappings"][1]["ebs"]["delete_on_termination"]  # default: deleted
    assert messages(check(tmp_path, change), "SPOT008") == []


def test_spot009_ecs_spot_provider_without_managed_draining(tmp_path):
    def change(res):
        res["aws_ecs_capacity_provider"]["spot"]["auto_scaling_group_provider"]["managed_draining"] = "DISABLED"
    assert messages(check(tmp_path, change), "SPOT009") == [
        "aws_ecs_capacity_provider.spot: capacity provider aws_ecs_capacity_provider.spot over spot group "
        "aws_autoscaling_group.ecs has managed_draining DISABLED: tasks are killed, not moved, when an instance is reclaimed"]


def test_spot009_on_demand_provider_without_draining_passes(tmp_path):
    def change(res):
        res["aws_ecs_capacity_provider"]["on_demand"]["auto_scaling_group_provider"]["managed_draining"] = "DISABLED"
    assert messages(check(tmp_path, change), "SPOT009") == []


def test_spot010_service_without_on_demand_base(tmp_path):
    def change(res):
        res["aws_ecs_service"]["api"]["capacity_provider_strategy"] = [
            {"capacity_provider": "${aws_ecs_capacity_provider.spot.name}", "weight": 1}]
        res["aws_autoscaling_group"]["web"]["mixed_instances_policy"]["instances_distribution"]["on_demand_base_capacity"] = 0
    assert messages(check(tmp_path, change), "SPOT010") == [
        "aws_ecs_service.api: service aws_ecs_service.api runs on spot with no on-demand base: one reclaim can take every task down at once",
        "aws_autoscaling_group.web: spot group aws_autoscaling_group.web serves a load balancer with on_demand_base_capacity 0: "
        "one reclaim can take every instance down at once"]


def test_spot010_fargate_spot_with_fargate_base_passes(tmp_path):
    def change(res):
        res["aws_ecs_service"]["api"]["capacity_provider_strategy"] = [
            {"capacity_provider": "FARGATE", "base": 1, "weight": 0}, {"capacity_provider": "FARGATE_SPOT", "weight": 3}]
    assert messages(check(tmp_path, change), "SPOT010") == []


def test_spot011_no_interruption_rule(tmp_path):
    def change(res):
        del res["aws_cloudwatch_event_rule"]
        del res["aws_cloudwatch_event_target"]
    assert messages(check(tmp_path, change), "SPOT011") == [
        "aws_autoscaling_group.train: no EventBridge rule matches 'EC2 Spot Instance Interruption Warning' in this "
        "configuration: nothing outside the instance hears that spot capacity is being reclaimed"]


def test_spot011_rule_without_target(tmp_path):
    def change(res):
        del res["aws_cloudwatch_event_target"]
    assert messages(check(tmp_path, change), "SPOT011") == [
        "aws_cloudwatch_event_rule.spot_interruption: EventBridge rule aws_cloudwatch_event_rule.spot_interruption "
        "matches spot interruptions but has no target: the events go nowhere"]


def test_spot011_all_ec2_events_pattern_passes(tmp_path):
    def change(res):
        res["aws_cloudwatch_event_rule"]["spot_interruption"]["event_pattern"] = json.dumps({"source": ["aws.ec2"]})
    assert messages(check(tmp_path, change), "SPOT011") == []


def test_spot012_checkpoints_on_instance_storage_only(tmp_path):
    def change(res):
        del res["aws_efs_file_system"]
        res["aws_launch_template"]["lt"]["block_device_mappings"][1]["ebs"]["delete_on_termination"] = True
    found = messages(check(tmp_path, change), "SPOT012")
    # THEN the training groups are flagged; web serves a target group and ecs backs a capacity provider
    assert found == [
        "aws_autoscaling_group.train: spot group aws_autoscaling_group.train has no durable place for checkpoints in this "
        "configuration (no EFS/FSx, S3 bucket or write access, kept EBS volume): checkpoints on instance storage vanish with the instance"]


def test_spot012_s3_write_access_passes(tmp_path):
    def change(res):
        del res["aws_efs_file_system"]
        res["aws_launch_template"]["lt"]["block_device_mappings"][1]["ebs"]["delete_on_termination"] = True
        res["aws_iam_role_policy"] = {"ckpt": {"role": "train", "policy": json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["s3:PutObject"], "Resource": "arn:aws:s3:::ckpt/*"}]})}}
    assert messages(check(tmp_path, change), "SPOT012") == []


def test_spot012_volume_attached_at_boot_passes(tmp_path):
    # GIVEN no EFS and no kept template volume, but a role that attaches a kept volume at boot (spotkit's claim)
    def change(res):
        del res["aws_efs_file_system"]
        res["aws_launch_template"]["lt"]["block_device_mappings"][1]["ebs"]["delete_on_termination"] = True
        res["aws_iam_role_policy"] = {"data": {"role": "train", "policy": json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ec2:AttachVolume", "Resource": "*"}]})}}
    assert messages(check(tmp_path, change), "SPOT012") == []


def test_eks_spot_node_group_type_zone_and_routing_rules(tmp_path):
    # GIVEN an EKS spot node group with the default instance type in one subnet, beside the good config
    def change(res):
        res["aws_eks_node_group"] = {"gpu": {"cluster_name": "main", "node_role_arn": "arn:aws:iam::1:role/n",
                                             "capacity_type": "SPOT", "subnet_ids": ["${aws_subnet.a.id}"],
                                             "scaling_config": {"min_size": 0, "max_size": 2, "desired_size": 0}},
                                     "system": {"cluster_name": "main", "node_role_arn": "arn:aws:iam::1:role/n",
                                                "subnet_ids": ["${aws_subnet.a.id}"], "instance_types": ["m6i.large"],
                                                "scaling_config": {"min_size": 1, "max_size": 2, "desired_size": 1}}}
    findings = check(tmp_path, change)
    # THEN the spot node group gets the type and zone errors; the on-demand one is not judged
    assert messages(findings, "SPOT001") == ["aws_eks_node_group.gpu: spot node group aws_eks_node_group.gpu can launch only one instance "
                                             "type (t3.medium (the EKS default)): when that spot pool is reclaimed, nothing replaces it"]
    assert messages(findings, "SPOT003") == ["aws_eks_node_group.gpu: spot node group aws_eks_node_group.gpu uses a single availability "
                                             "zone: one zone's spot pools are all it can draw from"]


def test_spot010_cluster_default_strategy_applies_to_a_service_without_one(tmp_path):
    # GIVEN a service with no strategy on a cluster whose default strategy is spot only
    def change(res):
        del res["aws_ecs_service"]["api"]["capacity_provider_strategy"]
        res["aws_ecs_service"]["api"]["cluster"] = "${aws_ecs_cluster.main.id}"
        res["aws_ecs_cluster"] = {"main": {"name": "main"}}
        res["aws_ecs_cluster_capacity_providers"] = {"main": {
            "cluster_name": "${aws_ecs_cluster.main.name}", "capacity_providers": ["spot", "on-demand"],
            "default_capacity_provider_strategy": [{"capacity_provider": "spot", "weight": 1}]}}
    # THEN SPOT010 fires on the service (the provider is matched by its literal name)
    assert messages(check(tmp_path, change), "SPOT010") == [
        "aws_ecs_service.api: service aws_ecs_service.api runs on spot with no on-demand base: one reclaim can take every task down at once"]

    # WHEN the cluster default gives the on-demand provider a base THEN it passes
    def with_base(res):
        change(res)
        res["aws_ecs_cluster_capacity_providers"]["main"]["default_capacity_provider_strategy"].append(
            {"capacity_provider": "on-demand", "base": 1, "weight": 0})
    assert messages(check(tmp_path, with_base), "SPOT010") == []
