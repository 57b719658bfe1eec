"""EcsSpotCluster and the ecs_spot stack: capacity providers, default strategy, agent user data, and
every validation rule (exact messages)."""

from __future__ import annotations

import dataclasses
import warnings

import pytest

from spotkit.constructs.annotations import SpotkitWarning
from spotkit.constructs.compute_group import ComputeGroupSettings, InstanceRequirements
from spotkit.constructs.ecs_spot import (
    CapacityProviderSettings,
    EcsClusterSettings,
    EcsSpotCluster,
    ManagedScaling,
)
from spotkit.constructs.gpu import ECS_AMI_PARAMETER
from spotkit.stacks.base import SpotkitStack, StackConfig
from spotkit.stacks.ecs_spot import EcsSpotConfig, EcsSpotStack
from tests.support.synth import build_stack, data_sources, local_value, resources, synth_construct
from tests.support.tf_validate import needs_terraform, terraform_validate
from spotkit.errors import ValidationError


def by_name(doc: dict, rtype: str, key: str = "name") -> dict[str, dict]:
    return {r[key]: r for r in resources(doc, rtype).values()}


@pytest.fixture(scope="module")
def ecs_stack():
    # GIVEN the ecs_spot stack with no config WHEN it is synthesized
    doc, _ = build_stack(EcsSpotStack, EcsSpotConfig())
    return doc


def test_cluster_has_container_insights(ecs_stack):
    cluster = by_name(ecs_stack, "aws_ecs_cluster")["spotkit-ecs"]
    # THEN container insights are on
    assert cluster["setting"] == [{"name": "containerInsights", "value": "enabled"}]


def test_capacity_providers_drain_protect_and_scale(ecs_stack):
    providers = by_name(ecs_stack, "aws_ecs_capacity_provider")
    # THEN there is one spot and one on-demand provider, each backed by its own group
    assert sorted(providers) == ["spotkit-ecs-od", "spotkit-ecs-spot"]
    groups = {r["name"]: key for key, r in resources(ecs_stack, "aws_autoscaling_group").items()}
    for name, provider in providers.items():
        asg = provider["auto_scaling_group_provider"]
        assert asg["auto_scaling_group_arn"] == f"${{aws_autoscaling_group.{groups[name]}.arn}}"
        # AND managed draining, termination protection and scaling are on, with the default steps
        assert asg["managed_draining"] == "ENABLED"
        assert asg["managed_termination_protection"] == "ENABLED"
        assert asg["managed_scaling"] == {
            "status": "ENABLED", "target_capacity": 100, "minimum_scaling_step_size": 1,
            "maximum_scaling_step_size": 10, "instance_warmup_period": 300,
        }


def test_groups_are_scale_in_protected_spot_and_on_demand(ecs_stack):
    groups = by_name(ecs_stack, "aws_autoscaling_group")
    spot, od = groups["spotkit-ecs-spot"], groups["spotkit-ecs-od"]
    # THEN termination protection put scale-in protection on both groups
    assert spot["protect_from_scale_in"] is True and od["protect_from_scale_in"] is True
    # AND the spot group is all spot above a 0 base, the on-demand group all on-demand
    assert spot["mixed_instances_policy"]["instances_distribution"]["on_demand_percentage_above_base_capacity"] == 0
    assert od["mixed_instances_policy"]["instances_distribution"]["on_demand_percentage_above_base_capacity"] == 100
    # AND the tag ECS adds for managed scaling is declared, so Terraform does not strip it
    assert {"key": "AmazonECSManaged", "value": "true", "propagate_at_launch": True} in spot["tag"]


def test_default_strategy_has_on_demand_base_and_weights(ecs_stack):
    (assoc,) = resources(ecs_stack, "aws_ecs_cluster_capacity_providers").values()
    providers = {f"${{aws_ecs_capacity_provider.{k}.name}}": r["name"]
                 for k, r in resources(ecs_stack, "aws_ecs_capacity_provider").items()}
    strategy = {providers[s["capacity_provider"]]: (s["base"], s["weight"])
                for s in assoc["default_capacity_provider_strategy"]}
    # THEN one task is always on on-demand, the rest split 1:3 on-demand:spot
    assert strategy == {"spotkit-ecs-od": (1, 1), "spotkit-ecs-spot": (0, 3)}
    assert sorted(providers[p] for p in assoc["capacity_providers"]) == ["spotkit-ecs-od", "spotkit-ecs-spot"]


def test_user_data_joins_cluster_and_drains_on_spot_notice(ecs_stack):
    script = local_value(ecs_stack, "ecs_spot-group")
    # THEN the agent joins the cluster, drains on the spot notice and stops containers within it
    assert "ECS_CLUSTER=spotkit-ecs\n" in script
    assert "ECS_ENABLE_SPOT_INSTANCE_DRAINING=true\n" in script
    assert "ECS_CONTAINER_STOP_TIMEOUT=30s\n" in script
    assert 'ECS_INSTANCE_ATTRIBUTES={"spotkit.capacity":"spot"}' in script
    # AND a CPU cluster does not turn GPU support on
    assert "ECS_ENABLE_GPU_SUPPORT" not in script


def test_instances_boot_the_ecs_ami_and_may_run_the_agent(ecs_stack):
    params = {v["name"] for v in data_sources(ecs_stack, "aws_ssm_parameter").values()}
    assert params == {ECS_AMI_PARAMETER}
    attachments = [r["policy_arn"] for r in resources(ecs_stack, "aws_iam_role_policy_attachment").values()]
    assert attachments.count("arn:aws:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role") == 2


def test_ecs_stack_is_registered_and_builds_from_the_registry():
    from spotkit.stacks import registry

    stack_cls, config_cls = registry.get("ecs_spot").load()
    assert (stack_cls, config_cls) == (EcsSpotStack, EcsSpotConfig)


def test_custom_providers_without_termination_protection():
    # GIVEN spot without termination protection or draining, and a 5:1 weighting
    settings = EcsClusterSettings(
        spot=CapacityProviderSettings(group=ComputeGroupSettings(max_size=8), managed_termination_protection=False,
                                      managed_draining=False,
                                      managed_scaling=ManagedScaling(target_capacity=80, maximum_scaling_step_size=4)),
        default_on_demand_base=2, default_on_demand_weight=1, default_spot_weight=5,
        container_stop_timeout_seconds=45,
    )
    # WHEN the cluster is synthesized
    doc, cluster = synth_construct(lambda s: EcsSpotCluster(s, "ecs", name="svc", vpc_id="vpc-1",
                                                            subnet_ids=["subnet-a", "subnet-b"], settings=settings))
    spot = by_name(doc, "aws_ecs_capacity_provider")["svc-spot"]["auto_scaling_group_provider"]
    # THEN the provider says so, and the group is left without scale-in protection
    assert spot["managed_termination_protection"] == "DISABLED"
    assert spot["managed_draining"] == "DISABLED"
    assert spot["managed_scaling"]["target_capacity"] == 80
    assert spot["managed_scaling"]["maximum_scaling_step_size"] == 4
    assert by_name(doc, "aws_autoscaling_group")["svc-spot"]["protect_from_scale_in"] is False
    assert by_name(doc, "aws_autoscaling_group")["svc-od"]["protect_from_scale_in"] is True
    (assoc,) = resources(doc, "aws_ecs_cluster_capacity_providers").values()
    assert sorted((s["base"], s["weight"]) for s in assoc["default_capacity_provider_strategy"]) == [(0, 5), (2, 1)]
    assert "ECS_CONTAINER_STOP_TIMEOUT=45s\n" in local_value(doc, "ecs_spot-group")
    # AND a service strategy from the construct puts the base on on-demand
    strategy = cluster.strategy(1, 0, 1)
    assert [(s.base, s.weight) for s in strategy] == [(1, 0), (0, 1)]


# --- validation ------------------------------------------------------------------------------

@pytest.fixture()
def stack():
    from cdktn import Testing

    return SpotkitStack(Testing.app(), "test", StackConfig(name="test"))


def build(stack, name="svc", **changes):
    return EcsSpotCluster(stack, "ecs", name=name, vpc_id="vpc-1", subnet_ids=["subnet-a", "subnet-b"],
                          settings=dataclasses.replace(EcsClusterSettings(), **changes))


def test_rejects_termination_protection_without_managed_scaling(stack):
    # GIVEN termination protection on and managed scaling off WHEN the cluster is built THEN it is refused
    spot = CapacityProviderSettings(managed_scaling=ManagedScaling(enabled=False))
    with pytest.raises(ValidationError) as err:
        build(stack, spot=spot)
    assert str(err.value) == (
        "EcsSpotCluster 'svc': capacity provider 'spot': managed termination protection needs managed scaling: "
        "enable spot.managed_scaling.enabled or set spot.managed_termination_protection=False"
    )
    # AND no resource was created
    assert stack.node.try_find_child("ecs") is None


def test_managed_scaling_off_is_fine_without_termination_protection(stack):
    spot = CapacityProviderSettings(managed_scaling=ManagedScaling(enabled=False), managed_termination_protection=False)
    cluster = build(stack, spot=spot)
    assert cluster.groups["spot"].settings.protect_from_scale_in is False


def test_rejects_non_gpu_type_in_gpu_cluster(stack):
    spot = CapacityProviderSettings(group=ComputeGroupSettings(instance_types=("g5.xlarge", "m6i.large", "g6.xlarge")))
    with pytest.raises(ValidationError) as err:
        build(stack, gpu=True, spot=spot)
    assert str(err.value) == (
        "EcsSpotCluster 'svc': capacity provider 'spot': m6i.large is not a GPU instance type but the cluster runs "
        "GPU tasks: use NVIDIA GPU families (g4dn, g5, g6, gr6, g6e, p3, p3dn, p4d, p4de, p5, p5e, p5en) or turn gpu off"
    )


def test_rejects_attribute_selection_without_nvidia_in_gpu_cluster(stack):
    group = ComputeGroupSettings(instance_requirements=InstanceRequirements(vcpu_min=4))
    with pytest.raises(ValidationError) as err:
        build(stack, gpu=True, spot=CapacityProviderSettings(group=group),
              on_demand=CapacityProviderSettings(group=dataclasses.replace(group, on_demand_percentage_above_base=100)))
    assert str(err.value) == (
        "EcsSpotCluster 'svc': capacity provider 'spot': instance_requirements must select NVIDIA GPUs in a GPU "
        "cluster: set accelerator_manufacturers=('nvidia',) and accelerator_count_min >= 1"
    )


def test_rejects_stop_timeout_beyond_the_notice(stack):
    with pytest.raises(ValidationError) as err:
        build(stack, container_stop_timeout_seconds=121)
    assert str(err.value) == (
        "EcsSpotCluster 'svc': container_stop_timeout_seconds must be between 1 and 120 (got 121): "
        "a spot instance is gone two minutes after the notice"
    )


def test_warns_when_stop_timeout_leaves_little_of_the_notice(stack):
    with pytest.warns(SpotkitWarning, match="container_stop_timeout_seconds=100 leaves under 30 s"):
        build(stack, container_stop_timeout_seconds=100)


def test_rejects_zero_weights(stack):
    with pytest.raises(ValidationError) as err:
        build(stack, default_on_demand_weight=0, default_spot_weight=0)
    assert str(err.value) == (
        "EcsSpotCluster 'svc': default_on_demand_weight and default_spot_weight are both 0: AWS places no task "
        "with that strategy; give spot a weight of 1 or more"
    )


def test_rejects_on_demand_provider_that_uses_spot(stack):
    with pytest.raises(ValidationError) as err:
        build(stack, on_demand=CapacityProviderSettings())
    assert str(err.value) == (
        "EcsSpotCluster 'svc': capacity provider 'on_demand' must be all on-demand: set "
        "on_demand.group.on_demand_percentage_above_base=100 (got 0)"
    )


@pytest.mark.parametrize("name", ["ecs-prod", "aws-x", "Prod", "a" * 36])
def test_rejects_reserved_or_invalid_cluster_names(stack, name):
    with pytest.raises(ValidationError, match=r"name must be 2-35 lowercase letters.*not with aws, ecs or fargate"):
        build(stack, name=name)


def test_longest_cluster_name_still_names_its_groups(stack):
    # GIVEN a 35-character name THEN "<name>-spot" (40) is still a valid compute group name
    cluster = build(stack, name="a" * 35)
    assert cluster.groups["spot"].name == "a" * 35 + "-spot"


def test_gpu_support_follows_a_gpu_ami_parameter(stack):
    # GIVEN a CPU cluster whose spot group boots the GPU AMI parameter
    from spotkit.constructs.gpu import ECS_GPU_AMI_PARAMETER

    spot = CapacityProviderSettings(group=ComputeGroupSettings(ami_ssm_parameter=ECS_GPU_AMI_PARAMETER))
    cluster = build(stack, spot=spot)
    # THEN only that group's agent enables GPU support
    assert cluster.agent_config("spot")["ECS_ENABLE_GPU_SUPPORT"] == "true"
    assert "ECS_ENABLE_GPU_SUPPORT" not in cluster.agent_config("on_demand")


def test_rejects_step_sizes_out_of_order(stack):
    spot = CapacityProviderSettings(managed_scaling=ManagedScaling(minimum_scaling_step_size=5, maximum_scaling_step_size=2))
    with pytest.raises(ValidationError) as err:
        build(stack, spot=spot)
    assert str(err.value) == (
        "EcsSpotCluster 'svc': capacity provider 'spot': managed_scaling.minimum_scaling_step_size (5) is above "
        "maximum_scaling_step_size (2)"
    )


def test_rejects_target_capacity_out_of_range(stack):
    with pytest.raises(ValidationError) as err:
        build(stack, spot=CapacityProviderSettings(managed_scaling=ManagedScaling(target_capacity=0)))
    assert str(err.value) == (
        "EcsSpotCluster 'svc': capacity provider 'spot': managed_scaling.target_capacity must be between 1 and 100 (got 0)"
    )


def test_defaults_raise_no_warning(stack):
    with warnings.catch_warnings():
        warnings.simplefilter("error", SpotkitWarning)
        build(stack)


# --- provider 5.100 ----------------------------------------------------------------------------

@pytest.mark.terraform
def test_ecs_stack_validates_with_provider_5_100(ecs_stack, tmp_path):
    needs_terraform()
    result = terraform_validate(ecs_stack, tmp_path / "ecs")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "The configuration is valid" in result.stdout


def test_interruptions_of_both_groups_are_routed_to_the_handler():
    # GIVEN the ecs_spot defaults WHEN synthesized
    import json as _json

    from spotkit.stacks.ecs_spot import EcsSpotConfig, EcsSpotStack
    from tests.support.synth import build_stack, resources

    doc, stack = build_stack(EcsSpotStack, EcsSpotConfig())
    groups = sorted(g.name for g in stack.cluster.groups.values())
    rules = [_json.loads(r["event_pattern"]) for r in resources(doc, "aws_cloudwatch_event_rule").values()
             if "event_pattern" in r]  # the fallback check is a scheduled rule
    spot = [r for r in rules if r.get("detail-type") == ["EC2 Spot Instance Interruption Warning"]]
    # THEN spot warnings reach the queue and lifecycle actions are scoped to both groups
    assert len(spot) == 1
    lifecycle = [r for r in rules if r.get("detail-type") == ["EC2 Instance-terminate Lifecycle Action"]]
    assert sorted(lifecycle[0]["detail"]["AutoScalingGroupName"]) == groups
    assert len(resources(doc, "aws_sqs_queue")) == 2  # queue + dead-letter queue
