"""SpotComputeGroup: synthesized values and every validation rule (exact messages)."""

from __future__ import annotations

import base64
import dataclasses
import warnings

import pytest
from cdktn import Testing as CdkTesting

from spotkit.constructs.annotations import SpotkitWarning
from spotkit.constructs.compute_group import (
    ComputeGroupSettings,
    InstanceRequirements,
    SpotComputeGroup,
)
from spotkit.constructs.user_data import UserDataPart, escape_for_terraform
from spotkit.stacks.base import SpotkitStack, StackConfig
from tests.support.synth import assert_resource_with_properties, local_value, one, resources, synth_construct
from spotkit.errors import ValidationError

SUBNETS = ["subnet-a", "subnet-b"]


def make_group(stack, settings=ComputeGroupSettings(), subnets=SUBNETS, name="fleet"):
    return SpotComputeGroup(stack, name, name=name, vpc_id="vpc-1", subnet_ids=subnets, settings=settings)


@pytest.fixture(scope="module")
def default_group():
    # GIVEN default settings WHEN the group is synthesized
    def build(stack):
        group = make_group(stack)
        group.add_user_data(UserDataPart("hello", 'echo "checkpoint dir is ${CKPT:-/mnt}"', order=10))
        return group

    doc, group = synth_construct(build)
    return doc, group


def test_capacity_rebalance_and_allocation_strategy(default_group):
    doc, _ = default_group
    asg = one(doc, "aws_autoscaling_group")
    # THEN rebalancing is on and spot uses price-capacity-optimized
    assert asg["capacity_rebalance"] is True
    dist = asg["mixed_instances_policy"]["instances_distribution"]
    assert dist["spot_allocation_strategy"] == "price-capacity-optimized"
    assert dist["on_demand_base_capacity"] == 0
    assert dist["on_demand_percentage_above_base_capacity"] == 0


def test_three_overrides_by_default(default_group):
    doc, _ = default_group
    overrides = one(doc, "aws_autoscaling_group")["mixed_instances_policy"]["launch_template"]["override"]
    assert [o["instance_type"] for o in overrides] == ["m6i.large", "m6a.large", "m5.large"]


def test_group_spans_every_subnet_and_ignores_desired_drift(default_group):
    doc, _ = default_group
    asg = one(doc, "aws_autoscaling_group")
    assert asg["vpc_zone_identifier"] == SUBNETS
    assert asg["lifecycle"]["ignore_changes"] == ["desired_capacity"]
    assert asg["instance_refresh"] == {"strategy": "Rolling", "preferences": {"min_healthy_percentage": 90}}


def test_termination_lifecycle_hook(default_group):
    doc, _ = default_group
    hook = one(doc, "aws_autoscaling_group")["initial_lifecycle_hook"]
    assert hook == [{
        "name": "spotkit-drain",
        "lifecycle_transition": "autoscaling:EC2_INSTANCE_TERMINATING",
        "heartbeat_timeout": 300,
        "default_result": "CONTINUE",
    }]


def test_launch_template_requires_imdsv2_with_hop_limit_2(default_group):
    doc, _ = default_group
    assert_resource_with_properties(doc, "aws_launch_template", {
        "metadata_options": {"http_tokens": "required", "http_put_response_hop_limit": 2, "http_endpoint": "enabled"},
    })


def test_root_volume_encrypted_gp3(default_group):
    doc, _ = default_group
    lt = one(doc, "aws_launch_template")
    root = lt["block_device_mappings"][0]
    assert root["device_name"] == "/dev/xvda"
    assert root["ebs"]["encrypted"] == "true"
    assert root["ebs"]["volume_type"] == "gp3"
    assert root["ebs"]["volume_size"] == 50


def test_group_tag_propagates_to_instances_and_volumes(default_group):
    doc, _ = default_group
    lt = one(doc, "aws_launch_template")
    specs = {s["resource_type"]: s["tags"] for s in lt["tag_specifications"]}
    assert specs["instance"]["spotkit:group"] == "fleet"
    assert specs["volume"]["spotkit:group"] == "fleet"
    asg_tags = {t["key"]: t for t in one(doc, "aws_autoscaling_group")["tag"]}
    assert asg_tags["spotkit:group"] == {"key": "spotkit:group", "value": "fleet", "propagate_at_launch": True}


def test_user_data_parts_are_assembled_and_bash_variables_escaped(default_group):
    doc, _ = default_group
    assert one(doc, "aws_launch_template")["user_data"].startswith("${base64encode(local.")
    script = local_value(doc, "fleet_fleet_user_data")
    assert script.startswith("#!/bin/bash\n")
    assert "# --- part: hello ---" in script
    # bash's ${VAR} reaches the instance intact: Terraform sees $${...}
    assert 'echo "checkpoint dir is $${CKPT:-/mnt}"' in script


def test_instance_role_is_least_privilege(default_group):
    doc, _ = default_group
    import json

    policy = json.loads(one(doc, "aws_iam_role_policy")["policy"])
    actions = [a for st in policy["Statement"] for a in st["Action"]]
    assert actions == ["autoscaling:CompleteLifecycleAction", "autoscaling:RecordLifecycleActionHeartbeat",
                       "s3:GetObject"]
    assert policy["Statement"][0]["Resource"].endswith(":autoScalingGroupName/fleet")
    # the shipped agent: that one object, nothing else in the bucket
    assert policy["Statement"][1]["Resource"].endswith("/spotkit-agent.pyz") and "*" not in policy["Statement"][1]["Resource"]
    assert one(doc, "aws_iam_role_policy_attachment")["policy_arn"] == "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"


def test_ami_defaults_to_public_ssm_parameter(default_group):
    doc, _ = default_group
    (param,) = doc["data"]["aws_ssm_parameter"].values()
    assert param["name"] == "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"


def test_on_demand_floor_and_weights():
    # GIVEN an on-demand floor of 2, 25% on-demand above it, and weights
    settings = ComputeGroupSettings(
        instance_types=("g5.xlarge", "g5.2xlarge", "g6.xlarge"), instance_weights={"g5.2xlarge": 2},
        on_demand_base_capacity=2, on_demand_percentage_above_base=25, max_size=10,
    )
    doc, _ = synth_construct(lambda s: make_group(s, settings))
    mip = one(doc, "aws_autoscaling_group")["mixed_instances_policy"]
    # THEN the split and the weight are what was asked
    assert mip["instances_distribution"]["on_demand_base_capacity"] == 2
    assert mip["instances_distribution"]["on_demand_percentage_above_base_capacity"] == 25
    assert mip["launch_template"]["override"][1] == {"instance_type": "g5.2xlarge", "weighted_capacity": "2"}
    assert "weighted_capacity" not in mip["launch_template"]["override"][0]


def test_attribute_based_gpu_requirements():
    settings = ComputeGroupSettings(instance_requirements=InstanceRequirements(
        vcpu_min=4, memory_mib_min=16384, accelerator_manufacturers=("nvidia",),
        accelerator_names=("a10g", "l4"), accelerator_count_min=1, accelerator_count_max=4))
    doc, _ = synth_construct(lambda s: make_group(s, settings))
    (override,) = one(doc, "aws_autoscaling_group")["mixed_instances_policy"]["launch_template"]["override"]
    req = override["instance_requirements"]
    assert req["accelerator_manufacturers"] == ["nvidia"]
    assert req["accelerator_names"] == ["a10g", "l4"]
    assert req["accelerator_count"] == {"min": 1, "max": 4}
    assert req["accelerator_types"] == ["gpu"]
    assert req["vcpu_count"] == {"min": 4}


def test_escape_keeps_tokens_and_escapes_bash():
    assert escape_for_terraform("a ${X} ${TfToken[TOKEN.1]} %{y}") == "a $${X} ${TfToken[TOKEN.1]} %%{y}"


# --- validation: every rule, exact message -----------------------------------------------------

@pytest.fixture()
def stack():
    return SpotkitStack(CdkTesting.app(), "v", StackConfig(name="v"))


def bad(stack, **changes):
    with pytest.raises(ValidationError) as err:
        make_group(stack, dataclasses.replace(ComputeGroupSettings(), **changes))
    return str(err.value)


def test_rejects_one_instance_type_when_using_spot(stack):
    assert bad(stack, instance_types=("m5.large",)) == (
        "SpotComputeGroup 'fleet': a group that uses spot needs at least 2 instance types (got 1: m5.large); "
        "losing one spot pool would take the whole group. Add instance types (3 or more recommended), use "
        "instance_requirements, or set on_demand_percentage_above_base=100"
    )


def test_one_instance_type_is_fine_when_all_on_demand(stack):
    make_group(stack, ComputeGroupSettings(instance_types=("m5.large",), on_demand_percentage_above_base=100))


def test_rejects_on_demand_percentage_outside_0_100(stack):
    assert bad(stack, on_demand_percentage_above_base=120) == (
        "SpotComputeGroup 'fleet': on_demand_percentage_above_base must be between 0 and 100 (got 120): "
        "use 0 for all spot above the base, 100 for all on-demand"
    )
    assert "(got -1)" in bad(stack, on_demand_percentage_above_base=-1)


def test_rejects_base_capacity_above_max_size(stack):
    assert bad(stack, on_demand_base_capacity=5, max_size=4) == (
        "SpotComputeGroup 'fleet': on_demand_base_capacity (5) is above max_size (4): the group could never "
        "reach its on-demand floor; raise max_size or lower on_demand_base_capacity"
    )


def test_rejects_min_above_max(stack):
    assert bad(stack, min_size=5, max_size=2) == (
        "SpotComputeGroup 'fleet': min_size (5) is greater than max_size (2): raise max_size or lower min_size"
    )


def test_rejects_unknown_allocation_strategy(stack):
    assert bad(stack, spot_allocation_strategy="cheapest") == (
        "SpotComputeGroup 'fleet': spot_allocation_strategy 'cheapest' is not accepted by AWS: use one of "
        "price-capacity-optimized, capacity-optimized, capacity-optimized-prioritized, lowest-price "
        "(price-capacity-optimized is recommended)"
    )
    assert bad(stack, on_demand_allocation_strategy="cheapest") == (
        "SpotComputeGroup 'fleet': on_demand_allocation_strategy 'cheapest' is not accepted by AWS: use one of "
        "prioritized, lowest-price"
    )


@pytest.mark.parametrize("seconds", [29, 7201])
def test_rejects_heartbeat_outside_30_7200(stack, seconds):
    assert bad(stack, lifecycle_hook_heartbeat_seconds=seconds) == (
        f"SpotComputeGroup 'fleet': lifecycle_hook_heartbeat_seconds must be between 30 and 7200 (got {seconds}); "
        "300 leaves time to drain within a typical checkpoint"
    )


def test_heartbeat_bounds_are_inclusive(stack):
    make_group(stack, ComputeGroupSettings(lifecycle_hook_heartbeat_seconds=30), name="lo")
    make_group(stack, ComputeGroupSettings(lifecycle_hook_heartbeat_seconds=7200), name="hi")


def test_rejects_desired_outside_bounds(stack):
    assert bad(stack, desired_capacity=9, max_size=4) == (
        "SpotComputeGroup 'fleet': desired_capacity (9) must lie between min_size (0) and max_size (4)"
    )


def test_rejects_weights_for_unlisted_types(stack):
    assert bad(stack, instance_weights={"p5.48xlarge": 8}) == (
        "SpotComputeGroup 'fleet': instance_weights names types that are not in instance_types: p5.48xlarge"
    )


def test_rejects_bad_name(stack):
    with pytest.raises(ValidationError, match="name must be 2-40 lowercase letters"):
        make_group(stack, name="Fleet_1")


def test_validation_runs_before_any_resource(stack):
    # WHEN validation fails THEN nothing was added to the stack
    before = len(stack.node.children)
    bad(stack, min_size=3, max_size=1)
    assert len(stack.node.children) == before


# --- warnings, not errors ---------------------------------------------------------------------

def test_single_subnet_warns(stack):
    with pytest.warns(SpotkitWarning, match="a single subnet puts every instance in one AZ"):
        make_group(stack, subnets=["subnet-only"])


def test_max_spot_price_warns(stack):
    with pytest.warns(SpotkitWarning, match=r"spot_max_price=0.50 adds interruptions"):
        make_group(stack, ComputeGroupSettings(spot_max_price="0.50"))


def test_defaults_do_not_warn(stack):
    with warnings.catch_warnings():
        warnings.simplefilter("error", SpotkitWarning)
        make_group(stack)
