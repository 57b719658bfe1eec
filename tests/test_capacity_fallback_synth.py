"""Synthesis of the fallback settings (modules/capacity_fallback.py) on gpu_inference and ecs_spot: the
launch-failure and placement-failure rules, the scheduled return check, the handler's environment and
IAM, and validation in the constructor with the exact messages."""

from __future__ import annotations

import dataclasses
import json

import pytest

from spotkit.constructs.capacity_fallback import FallbackSettings
from spotkit.stacks.ecs_spot import EcsSpotConfig, EcsSpotStack
from spotkit.stacks.gpu_inference import GpuInferenceConfig, GpuInferenceStack
from spotkit.stacks.training import TrainingConfig, TrainingStack
from tests.support.synth import assert_resource_with_properties, build_stack, one, resources
from spotkit.errors import ValidationError


@pytest.fixture(scope="module")
def ecs():
    return build_stack(EcsSpotStack, EcsSpotConfig())


def _rules(doc) -> dict[str, dict]:
    return {r["name"]: r for r in resources(doc, "aws_cloudwatch_event_rule").values()}


def _rule_ref(doc, name: str) -> str:
    [key] = [k for k, r in resources(doc, "aws_cloudwatch_event_rule").items() if r["name"] == name]
    return key


def test_ecs_spot_routes_launch_and_placement_failures_and_schedules_the_check(ecs):
    doc, stack = ecs
    rules = _rules(doc)
    groups = sorted(g.name for g in stack.cluster.groups.values())
    # THEN the launch failures of both groups go to the queue
    launch = json.loads(rules["spotkit-ecs-launch-failure"]["event_pattern"])
    assert launch["source"] == ["aws.autoscaling"] and launch["detail-type"] == ["EC2 Instance Launch Unsuccessful"]
    assert sorted(launch["detail"]["AutoScalingGroupName"]) == groups
    # AND the cluster's task placement failures
    placement = json.loads(rules["spotkit-ecs-placement-failure"]["event_pattern"])
    assert placement["source"] == ["aws.ecs"] and placement["detail-type"] == ["ECS Service Action"]
    assert placement["detail"]["eventName"] == ["SERVICE_TASK_PLACEMENT_FAILURE"]
    [cluster_arn] = placement["detail"]["clusterArn"]
    assert cluster_arn.startswith("${aws_ecs_cluster.") and cluster_arn.endswith(".arn}")
    # AND the return check every 10 minutes, with no pattern
    assert_resource_with_properties(doc, "aws_cloudwatch_event_rule", {
        "name": "spotkit-ecs-fallback-check", "schedule_expression": "rate(10 minutes)"})
    assert "event_pattern" not in rules["spotkit-ecs-fallback-check"]
    # AND all three target the interruption queue, which lets exactly these rules send
    queue_arn = "${aws_sqs_queue.interruptions_queue_"
    targets = {t["rule"]: t["arn"] for t in resources(doc, "aws_cloudwatch_event_target").values()}
    for name in ("launch-failure", "placement-failure", "fallback-check"):
        key = _rule_ref(doc, f"spotkit-ecs-{name}")
        assert targets[f"${{aws_cloudwatch_event_rule.{key}.name}}"].startswith(queue_arn)
    policy = json.loads(one(doc, "aws_sqs_queue_policy")["policy"])
    allowed = policy["Statement"][0]["Condition"]["ArnEquals"]["aws:SourceArn"]
    assert len(allowed) == 9 and f"${{aws_cloudwatch_event_rule.{_rule_ref(doc, 'spotkit-ecs-fallback-check')}.arn}}" in allowed


def test_the_handler_gets_the_settings_and_may_change_only_its_groups(ecs):
    doc, stack = ecs
    env = one(doc, "aws_lambda_function")["environment"]["variables"]
    assert {k: v for k, v in env.items() if k.startswith("SPOTKIT_FALLBACK")} == {
        "SPOTKIT_FALLBACK": "true", "SPOTKIT_FALLBACK_MAX_ON_DEMAND_BASE": "2",
        "SPOTKIT_FALLBACK_HOLD_MINUTES": "30", "SPOTKIT_FALLBACK_CHECK_EVERY_MINUTES": "10"}
    statements = {s["Sid"]: s for s in stack.interruptions.handler_policy["Statement"]}
    assert statements["FallbackSplit"]["Action"] == ["autoscaling:UpdateAutoScalingGroup",
                                                     "autoscaling:CreateOrUpdateTags", "autoscaling:DeleteTags"]
    assert len(statements["FallbackSplit"]["Resource"]) == 2
    assert all("autoScalingGroupName/" in r for r in statements["FallbackSplit"]["Resource"])
    assert "*" not in " ".join(statements["FallbackRead"]["Action"])
    # AND using the launch template is allowed only through a launch template, for EC2 only
    assert statements["FallbackUseLaunchTemplate"]["Condition"]["Bool"] == {"ec2:IsLaunchTemplateResource": "true"}
    assert statements["FallbackTagAtLaunch"]["Condition"] == {"StringEquals": {"ec2:CreateAction": "RunInstances"}}
    assert statements["FallbackPassInstanceRole"]["Condition"] == {
        "StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}}
    # AND only the groups' own instance roles may be passed, never any role of the account
    passable = statements["FallbackPassInstanceRole"]["Resource"]
    assert len(passable) == 2 and all(":role/spotkit-ecs-" in r and r.endswith("-*") for r in passable), passable


def test_gpu_inference_has_the_fallback_on_by_default_with_its_settings():
    config = GpuInferenceConfig(fallback=FallbackSettings(max_on_demand_base=3, hold_minutes=45, check_every_minutes=1))
    doc, _ = build_stack(GpuInferenceStack, config)
    rules = _rules(doc)
    assert "spotkit-gpu-launch-failure" in rules and "spotkit-gpu-placement-failure" in rules
    assert rules["spotkit-gpu-fallback-check"]["schedule_expression"] == "rate(1 minute)"
    env = one(doc, "aws_lambda_function")["environment"]["variables"]
    assert (env["SPOTKIT_FALLBACK_MAX_ON_DEMAND_BASE"], env["SPOTKIT_FALLBACK_HOLD_MINUTES"]) == ("3", "45")


def test_disabled_creates_no_capacity_rule_and_tells_the_handler():
    doc, stack = build_stack(EcsSpotStack, EcsSpotConfig(fallback=FallbackSettings(enabled=False)))
    names = set(_rules(doc))
    assert not {"spotkit-ecs-launch-failure", "spotkit-ecs-placement-failure", "spotkit-ecs-fallback-check"} & names
    assert one(doc, "aws_lambda_function")["environment"]["variables"]["SPOTKIT_FALLBACK"] == "false"
    assert "FallbackSplit" not in {s["Sid"] for s in stack.interruptions.handler_policy["Statement"]}


def test_training_has_no_fallback_setting():
    assert not hasattr(TrainingConfig(), "fallback")
    doc, _ = build_stack(TrainingStack, TrainingConfig())
    assert not any(n.endswith("fallback-check") for n in _rules(doc))


@pytest.mark.parametrize("change,message", [
    (dict(max_on_demand_base=0), "ecs_spot 'spotkit-ecs': fallback.max_on_demand_base must be 1 or more (got 0); "
                                 "to turn the fallback off set fallback.enabled=False"),
    (dict(hold_minutes=2), "ecs_spot 'spotkit-ecs': fallback.hold_minutes must be between 5 and 1440 (got 2): it is "
                           "the least time between two changes of the on-demand base"),
    (dict(check_every_minutes=0), "ecs_spot 'spotkit-ecs': fallback.check_every_minutes must be between 1 and 1440 (got 0)"),
    (dict(check_every_minutes=40), "ecs_spot 'spotkit-ecs': fallback.check_every_minutes (40) is above "
                                   "fallback.hold_minutes (30): the return would wait for the check, not the hold; "
                                   "lower check_every_minutes or raise hold_minutes"),
])
def test_bad_settings_are_refused_in_the_constructor_with_the_fix(change, message):
    config = EcsSpotConfig(fallback=dataclasses.replace(FallbackSettings(), **change))
    with pytest.raises(ValidationError) as err:
        EcsSpotStack(__import__("cdktn").Testing.app(), "x", config)
    assert str(err.value) == message


def test_fallback_needs_interruptions():
    config = GpuInferenceConfig(interruptions=None)
    with pytest.raises(ValidationError) as err:
        GpuInferenceStack(__import__("cdktn").Testing.app(), "x", config)
    assert str(err.value) == ("gpu_inference 'spotkit-gpu': fallback.enabled needs interruptions (the handler is "
                              "what acts on launch failures): set interruptions, or fallback.enabled=False")
    # AND without the fallback, no interruptions is fine
    GpuInferenceStack(__import__("cdktn").Testing.app(), "y", GpuInferenceConfig(
        interruptions=None, fallback=FallbackSettings(enabled=False)))


def test_config_file_overrides_reach_the_fallback_settings():
    from spotkit.config import apply_overrides
    from spotkit.errors import ConfigError

    config = apply_overrides(GpuInferenceConfig(), {"fallback": {"max_on_demand_base": 4, "hold_minutes": 45}},
                             "gpu_inference")
    assert config.fallback == FallbackSettings(max_on_demand_base=4, hold_minutes=45)
    with pytest.raises(ConfigError, match="gpu_inference.fallback"):
        apply_overrides(GpuInferenceConfig(), {"fallback": {"ceiling": 4}}, "gpu_inference")
