"""The gpu_inference stack: GPU capacity, the ALB and target group, the inference task and service,
autoscaling, least-privilege roles, and every validation rule (exact messages)."""

from __future__ import annotations

import dataclasses
import json
import warnings

import pytest

from spotkit.constructs.annotations import SpotkitWarning
from spotkit.constructs.capacity_fallback import FallbackSettings
from spotkit.constructs.compute_group import InstanceRequirements
from spotkit.constructs.network import NetworkSettings
from spotkit.constructs.gpu import ECS_GPU_AMI_PARAMETER, GPU_FAMILIES, family_of
from spotkit.constructs.inference_service import (
    SPOT_ONLY_ACCEPTED,
    HOST_MODEL_CACHE,
    InferenceContainer,
    InferenceServiceSettings,
    validate_service,
)
from spotkit.stacks.gpu_inference import GpuInferenceConfig, GpuInferenceStack, default_service, resolve
from tests.support.synth import build_stack, data_sources, local_value, one, resources
from tests.support.tf_validate import needs_terraform, terraform_validate
from spotkit.errors import ValidationError


def by_name(doc: dict, rtype: str) -> dict[str, dict]:
    return {r["name"]: r for r in resources(doc, rtype).values()}


def ref(doc: dict, rtype: str, name: str, attr: str = "name") -> str:
    """The Terraform reference to the resource of ``rtype`` whose name is ``name``."""
    (key,) = [k for k, r in resources(doc, rtype).items() if r.get("name") == name]
    return f"${{{rtype}.{key}.{attr}}}"


def container(doc: dict) -> dict:
    (definition,) = json.loads(one(doc, "aws_ecs_task_definition")["container_definitions"])
    return definition


@pytest.fixture(scope="module")
def gpu_stack():
    # GIVEN the gpu_inference stack with no config WHEN it is synthesized
    doc, _ = build_stack(GpuInferenceStack, GpuInferenceConfig())
    return doc


CUSTOM = GpuInferenceConfig(
    name="r1",
    gpu_instance_types=("g5.12xlarge", "g6e.12xlarge", "g6.12xlarge", "p4d.24xlarge"),
    alb_subnet_ids=("subnet-pub-a", "subnet-pub-b"),
    service=InferenceServiceSettings(
        container=InferenceContainer(
            image="123456789012.dkr.ecr.us-east-1.amazonaws.com/vllm:0.8.5", model_id="deepseek-ai/DeepSeek-R1-Distill-Llama-70B",
            gpus_per_task=4, cpu=16384, memory_mib=131072, environment={"VLLM_LOGGING_LEVEL": "INFO"},
            hf_token_secret_arn="arn:aws:secretsmanager:us-east-1:123456789012:secret:hf-token-AbCdEf"),
        desired_count=3, on_demand_base=2, spot_overprovision=1, max_count=8,
        internet_facing=True, ingress_cidrs=("203.0.113.0/24",),
        certificate_arn="arn:aws:acm:us-east-1:123456789012:certificate/abc",
        deregistration_delay_seconds=45, model_cache="efs", efs_file_system_id="fs-0123456789abcdef0",
        efs_access_point_id="fsap-0123456789abcdef0", log_retention_days=14,
    ),
)


@pytest.fixture(scope="module")
def custom_stack():
    # GIVEN a 70B model on 4 GPUs, a public HTTPS ALB, EFS model cache and one extra spot replica
    doc, _ = build_stack(GpuInferenceStack, CUSTOM)
    return doc


# --- GPU capacity ------------------------------------------------------------------------------

def test_instance_types_are_all_gpu_families(gpu_stack):
    groups = by_name(gpu_stack, "aws_autoscaling_group")
    assert sorted(groups) == ["spotkit-gpu-od", "spotkit-gpu-spot"]
    for group in groups.values():
        types = [o["instance_type"] for o in group["mixed_instances_policy"]["launch_template"]["override"]]
        # THEN both groups offer three GPU types, L4, A10G and L40S
        assert types == ["g6.xlarge", "g5.xlarge", "g6e.xlarge"]
        assert all(family_of(t) in GPU_FAMILIES for t in types)


def test_gpu_ami_from_public_ssm_parameter(gpu_stack):
    params = {v["name"] for v in data_sources(gpu_stack, "aws_ssm_parameter").values()}
    assert params == {ECS_GPU_AMI_PARAMETER}


def test_user_data_enables_gpus_and_spot_draining(gpu_stack):
    script = local_value(gpu_stack, "ecs_spot-group")
    assert "ECS_ENABLE_SPOT_INSTANCE_DRAINING=true\n" in script
    assert "ECS_ENABLE_GPU_SUPPORT=true\n" in script
    assert "ECS_CLUSTER=spotkit-gpu\n" in script
    # AND the model cache on instance storage is prepared (instance store when present)
    assert f"CACHE={HOST_MODEL_CACHE}\n" in script and "Instance Storage" in script


def test_gpu_capacity_providers_drain_and_protect(gpu_stack):
    for provider in by_name(gpu_stack, "aws_ecs_capacity_provider").values():
        asg = provider["auto_scaling_group_provider"]
        assert (asg["managed_draining"], asg["managed_termination_protection"], asg["managed_scaling"]["status"]) == (
            "ENABLED", "ENABLED", "ENABLED")


def test_attribute_based_gpu_selection_applies_to_both_groups():
    # GIVEN NVIDIA accelerators by attributes WHEN the config is resolved
    accel = InstanceRequirements(vcpu_min=4, memory_mib_min=16384, accelerator_manufacturers=("nvidia",),
                                 accelerator_names=("a10g", "l4", "l40s"), accelerator_count_min=1,
                                 accelerator_total_memory_mib_min=24576)
    cluster, _ = resolve(GpuInferenceConfig(accelerators=accel))
    # THEN both groups select by attributes and boot the GPU AMI
    for cp in (cluster.spot, cluster.on_demand):
        assert cp.group.instance_requirements == accel
        assert cp.group.ami_ssm_parameter == ECS_GPU_AMI_PARAMETER


# --- load balancer -----------------------------------------------------------------------------

def test_target_group_deregistration_delay_and_health_check(gpu_stack):
    tg = one(gpu_stack, "aws_lb_target_group")
    assert tg["deregistration_delay"] == "60"
    assert tg["target_type"] == "ip" and tg["port"] == 8000
    assert tg["health_check"] == {
        "enabled": True, "path": "/health", "protocol": "HTTP", "port": "traffic-port", "matcher": "200",
        "interval": 15, "timeout": 5, "healthy_threshold": 2, "unhealthy_threshold": 3,
    }


def test_alb_is_internal_and_only_the_alb_reaches_the_service(gpu_stack):
    alb = one(gpu_stack, "aws_lb")
    assert alb["internal"] is True and alb["load_balancer_type"] == "application"
    sgs = {r["name_prefix"]: k for k, r in resources(gpu_stack, "aws_security_group").items() if "name_prefix" in r}
    alb_sg = f"${{aws_security_group.{sgs['spotkit-gpu-alb-']}.id}}"
    svc_sg = f"${{aws_security_group.{sgs['spotkit-gpu-svc-']}.id}}"
    ingress = [r for r in resources(gpu_stack, "aws_vpc_security_group_ingress_rule").values()]
    # THEN the service admits one rule: the ALB's group, on the container port
    assert [(r["referenced_security_group_id"], r["from_port"], r["to_port"]) for r in ingress
            if r["security_group_id"] == svc_sg] == [(alb_sg, 8000, 8000)]
    # AND the ALB admits the VPC range on the listener port
    assert [(r["cidr_ipv4"], r["from_port"]) for r in ingress if r["security_group_id"] == alb_sg] == [("10.42.0.0/16", 80)]
    listener = one(gpu_stack, "aws_lb_listener")
    assert (listener["port"], listener["protocol"]) == (80, "HTTP")


# --- task and service --------------------------------------------------------------------------

def test_task_definition_reserves_gpus_and_shared_memory(gpu_stack):
    task = one(gpu_stack, "aws_ecs_task_definition")
    assert (task["network_mode"], task["requires_compatibilities"]) == ("awsvpc", ["EC2"])
    c = container(gpu_stack)
    assert c["resourceRequirements"] == [{"type": "GPU", "value": "1"}]
    assert c["linuxParameters"]["sharedMemorySize"] == 8192
    assert c["stopTimeout"] == 30
    assert c["image"] == "vllm/vllm-openai:v0.8.5"
    assert c["command"][:2] == ["--model", "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"]
    assert c["command"][c["command"].index("--tensor-parallel-size") + 1] == "1"
    assert task["volume"] == [{"name": "model-cache", "host_path": HOST_MODEL_CACHE}]
    assert c["logConfiguration"]["logDriver"] == "awslogs"


def test_service_runs_on_spot_with_a_spare_and_rolls_back(gpu_stack):
    svc = one(gpu_stack, "aws_ecs_service")
    od = ref(gpu_stack, "aws_ecs_capacity_provider", "spotkit-gpu-od")
    spot = ref(gpu_stack, "aws_ecs_capacity_provider", "spotkit-gpu-spot")
    strategy = {s["capacity_provider"]: (s["base"], s["weight"]) for s in svc["capacity_provider_strategy"]}
    # THEN every replica runs on spot (no on-demand base, on-demand weight 0): 2 wanted + 1 spare
    assert strategy == {od: (0, 0), spot: (0, 4)}
    assert svc["desired_count"] == 3
    assert svc["tags"] == {"spotkit:spot-overprovision": "1", "spotkit:skip-check": SPOT_ONLY_ACCEPTED}
    # AND they spread over the 3 AZs of the created VPC
    assert len(svc["network_configuration"]["subnets"]) == 3
    assert svc["deployment_circuit_breaker"] == {"enable": True, "rollback": True}
    assert svc["load_balancer"][0]["container_port"] == 8000
    assert svc["lifecycle"] == {"ignore_changes": ["desired_count"]}
    assert svc["ordered_placement_strategy"][0] == {"type": "spread", "field": "attribute:ecs.availability-zone"}
    # AND the service waits for the listener and the capacity provider association
    assert any(d.startswith("aws_ecs_cluster_capacity_providers.") for d in svc["depends_on"])


def test_autoscaling_on_alb_requests_per_target(gpu_stack):
    target = one(gpu_stack, "aws_appautoscaling_target")
    assert (target["min_capacity"], target["max_capacity"]) == (3, 6)  # 2 wanted + 1 spare spot replica
    assert target["scalable_dimension"] == "ecs:service:DesiredCount"
    config = one(gpu_stack, "aws_appautoscaling_policy")["target_tracking_scaling_policy_configuration"]
    assert config["target_value"] == 120
    assert config["predefined_metric_specification"]["predefined_metric_type"] == "ALBRequestCountPerTarget"
    label = config["predefined_metric_specification"]["resource_label"]
    assert label.startswith("${aws_lb.") and ".arn_suffix}/${aws_lb_target_group." in label


def test_roles_are_least_privilege_and_logs_retained(gpu_stack):
    (log_group,) = [g for g in resources(gpu_stack, "aws_cloudwatch_log_group").values()
                    if g["name"] == "/spotkit/spotkit-gpu"]  # the interruption handler has its own
    assert log_group["retention_in_days"] == 30
    policies = by_name(gpu_stack, "aws_iam_role_policy")
    statements = json.loads(policies["spotkit-execution"]["policy"])["Statement"]
    # THEN the execution role may only write to its own log group; the task role has no policy
    assert statements == [{"Sid": "WriteOwnLogs", "Effect": "Allow",
                           "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                           "Resource": statements[0]["Resource"]}]
    assert statements[0]["Resource"].startswith("${aws_cloudwatch_log_group.") and statements[0]["Resource"].endswith(":*")
    assert "spotkit-task" not in policies
    (task_role,) = [r for r in resources(gpu_stack, "aws_iam_role").values() if r["name_prefix"] == "spotkit-gpu-task-"]
    trust = json.loads(task_role["assume_role_policy"])
    assert trust["Statement"][0]["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}
    assert "aws:SourceAccount" in trust["Statement"][0]["Condition"]["StringEquals"]


def test_custom_stack_public_https_efs_and_overprovision(custom_stack):
    alb = one(custom_stack, "aws_lb")
    assert alb["internal"] is False and alb["subnets"] == ["subnet-pub-a", "subnet-pub-b"]
    listener = one(custom_stack, "aws_lb_listener")
    assert (listener["port"], listener["protocol"]) == (443, "HTTPS")
    assert one(custom_stack, "aws_lb_target_group")["deregistration_delay"] == "45"
    # THEN desired = 3 replicas + 1 over-provisioned spot replica, 2 of them on on-demand
    svc = one(custom_stack, "aws_ecs_service")
    assert svc["desired_count"] == 4
    assert sorted((s["base"], s["weight"]) for s in svc["capacity_provider_strategy"]) == [(0, 4), (2, 1)]
    assert one(custom_stack, "aws_appautoscaling_target")["min_capacity"] == 4
    # AND 4 GPUs per task, tensor parallel 4, weights on EFS with TLS and the access point
    c = container(custom_stack)
    assert c["resourceRequirements"] == [{"type": "GPU", "value": "4"}]
    assert c["command"][c["command"].index("--tensor-parallel-size") + 1] == "4"
    assert c["secrets"] == [{"name": "HF_TOKEN", "valueFrom": CUSTOM.service.container.hf_token_secret_arn}]
    (volume,) = one(custom_stack, "aws_ecs_task_definition")["volume"]
    assert volume["efs_volume_configuration"] == {
        "file_system_id": "fs-0123456789abcdef0", "transit_encryption": "ENABLED",
        "authorization_config": {"access_point_id": "fsap-0123456789abcdef0", "iam": "ENABLED"},
    }
    assert "model-cache" not in local_value(custom_stack, "ecs_spot-group")
    policies = by_name(custom_stack, "aws_iam_role_policy")
    task = json.loads(policies["spotkit-task"]["policy"])["Statement"]
    assert task[0]["Action"] == ["elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"]
    assert task[0]["Resource"] == "arn:aws:elasticfilesystem:*:*:file-system/fs-0123456789abcdef0"
    execution = {s["Sid"]: s for s in json.loads(policies["spotkit-execution"]["policy"])["Statement"]}
    assert sorted(execution) == ["EcrToken", "PullImage", "ReadHfToken", "WriteOwnLogs"]
    assert execution["PullImage"]["Resource"] == "arn:aws:ecr:*:*:repository/vllm"
    assert execution["ReadHfToken"]["Resource"] == CUSTOM.service.container.hf_token_secret_arn


# --- validation --------------------------------------------------------------------------------

def with_service(**changes) -> GpuInferenceConfig:
    """The stack's defaults with some service settings changed."""
    return GpuInferenceConfig(service=dataclasses.replace(default_service(), **changes))


def test_rejects_deregistration_delay_above_the_notice():
    with pytest.raises(ValidationError) as err:
        resolve(with_service(deregistration_delay_seconds=121))
    assert str(err.value) == (
        "InferenceService 'spotkit-gpu': deregistration_delay_seconds is 121, above the 120-second spot notice: "
        "requests would be cut when the instance dies; use 90 or less"
    )


def test_warns_on_deregistration_delay_between_90_and_120():
    from cdktn import Testing

    # GIVEN a 100 s delay and a 10 s stop timeout (110 s, inside the notice)
    config = with_service(deregistration_delay_seconds=100, container=InferenceContainer(stop_timeout_seconds=10))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SpotkitWarning)
        GpuInferenceStack(Testing.app(), "s", config)
    # THEN exactly one warning: the delay leaves little of the notice
    assert [str(w.message) for w in caught if w.category is SpotkitWarning] == [
        "InferenceService 'spotkit-gpu': deregistration_delay_seconds=100 leaves under 20 s of the spot notice "
        "to stop the task"]


def test_warns_when_delay_plus_stop_timeout_exceeds_the_notice():
    from cdktn import Testing

    config = with_service(deregistration_delay_seconds=80, container=InferenceContainer(stop_timeout_seconds=60))
    with pytest.warns(SpotkitWarning, match=r"deregistration delay \+ stop timeout = 140 s, more than the 120-second"):
        GpuInferenceStack(Testing.app(), "s", config)


def test_defaults_raise_no_warning():
    from cdktn import Testing

    # GIVEN no on-demand base, but the fallback on and a spare spot replica THEN no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error", SpotkitWarning)
        GpuInferenceStack(Testing.app(), "s", GpuInferenceConfig())


def spotkit_warnings(config: GpuInferenceConfig) -> list[str]:
    from cdktn import Testing

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SpotkitWarning)
        GpuInferenceStack(Testing.app(), "s", config)
    return [str(w.message) for w in caught if w.category is SpotkitWarning]


@pytest.mark.parametrize("spare", [1, 0])
def test_warns_on_spot_only_without_the_fallback(spare):
    # GIVEN the default spot-only service, with or without its spare WHEN the fallback is off
    config = dataclasses.replace(with_service(spot_overprovision=spare), fallback=FallbackSettings(enabled=False))
    # THEN nothing covers spot gone everywhere: one warning, with both ways out
    assert spotkit_warnings(config) == [
        "InferenceService 'spotkit-gpu': on_demand_base=0 and no on-demand fallback: when spot capacity is reclaimed "
        "everywhere, nothing answers until spot returns; set on_demand_base 1 or more, or turn the fallback on "
        "(fallback.enabled) with spot_overprovision 1 or more"]


def test_warns_on_spot_only_without_a_spare_replica():
    # GIVEN the fallback on WHEN the spare spot replica is taken away
    # THEN every reclaim leaves the service short until a replacement boots: one warning
    assert spotkit_warnings(with_service(spot_overprovision=0)) == [
        "InferenceService 'spotkit-gpu': on_demand_base=0 with spot_overprovision=0: every spot reclaim leaves fewer "
        "than desired_count replicas answering until its replacement boots, spot or the fallback's on-demand; set "
        "spot_overprovision 1 or more, or on_demand_base 1 or more"]


@pytest.mark.parametrize("config", [
    # the spare and the fallback over 2 AZs: as available on the traces as over 3 (docs/simulate.md)
    GpuInferenceConfig(network=NetworkSettings(az_count=2)),
    # an on-demand replica, with or without the fallback
    with_service(on_demand_base=1, on_demand_weight=1, spot_overprovision=0),
    GpuInferenceConfig(service=InferenceServiceSettings(),
                       fallback=FallbackSettings(enabled=False)),
], ids=["spare-and-fallback-over-2-azs", "on-demand-base-1", "construct-defaults-no-fallback"])
def test_no_spot_only_warning_when_something_covers_the_reclaims(config):
    assert spotkit_warnings(config) == []


def test_rejects_on_demand_base_larger_than_desired_count():
    with pytest.raises(ValidationError) as err:
        resolve(with_service(desired_count=2, on_demand_base=3))
    assert str(err.value) == (
        "InferenceService 'spotkit-gpu': on_demand_base (3) is larger than desired_count (2): the on-demand floor "
        "cannot exceed the replicas; raise desired_count or lower on_demand_base"
    )


def test_rejects_non_gpu_instance_type_in_gpu_cluster():
    with pytest.raises(ValidationError) as err:
        resolve(GpuInferenceConfig(gpu_instance_types=("g5.xlarge", "c6i.xlarge", "g6.xlarge")))
    assert str(err.value) == (
        "EcsSpotCluster 'spotkit-gpu': capacity provider 'spot': c6i.xlarge is not a GPU instance type but the "
        "cluster runs GPU tasks: use NVIDIA GPU families (g4dn, g5, g6, gr6, g6e, p3, p3dn, p4d, p4de, p5, p5e, "
        "p5en) or turn gpu off"
    )


def test_rejects_unknown_gpu_family():
    with pytest.raises(ValidationError) as err:
        resolve(GpuInferenceConfig(gpu_families=("g5", "m7i", "g6")))
    assert str(err.value) == (
        "gpu_inference 'spotkit-gpu': gpu_families has m7i, which are not NVIDIA GPU families: use g4dn, g5, g6, "
        "gr6, g6e, p3, p3dn, p4d, p4de, p5, p5e, p5en"
    )


def test_rejects_size_a_family_does_not_sell():
    with pytest.raises(ValidationError) as err:
        resolve(GpuInferenceConfig(gpu_families=("g5", "p4d", "g6")))
    assert str(err.value) == (
        "gpu_inference 'spotkit-gpu': gpu_instance_size 'xlarge' does not exist in p4d (p4d sells 24xlarge): pick a "
        "size every family sells, or list gpu_instance_types explicitly"
    )


def test_rejects_more_gpus_per_task_than_an_instance_has():
    config = GpuInferenceConfig(service=InferenceServiceSettings(container=InferenceContainer(gpus_per_task=4)))
    with pytest.raises(ValidationError) as err:
        resolve(config)
    assert str(err.value) == (
        "gpu_inference 'spotkit-gpu': gpus_per_task is 4 but g6.xlarge has 1, g5.xlarge has 1, g6e.xlarge has 1 "
        "GPU(s): choose larger sizes or lower gpus_per_task"
    )


def test_rejects_public_alb_in_your_own_network_without_public_subnets():
    config = GpuInferenceConfig(network=NetworkSettings(vpc_id="vpc-1", subnet_ids=("subnet-a", "subnet-b")),
                                service=dataclasses.replace(InferenceServiceSettings(), internet_facing=True,
                                                            ingress_cidrs=("203.0.113.0/24",)))
    with pytest.raises(ValidationError) as err:
        resolve(config)
    assert str(err.value) == (
        "gpu_inference 'spotkit-gpu': service.internet_facing needs public subnets in 2 AZs for the load balancer: "
        "pass alb_subnet_ids, or let the stack create its VPC (with nat_gateway on it gets 2 public subnets)"
    )


def test_rejects_more_public_subnets_than_azs():
    with pytest.raises(ValidationError) as err:
        resolve(GpuInferenceConfig(network=NetworkSettings(public_subnet_count=3)))
    assert str(err.value) == "network.public_subnet_count must be between 1 and the AZ count 2 (got 3)"


def test_public_alb_in_created_vpc_has_a_public_subnet_in_each_az():
    # GIVEN a public ALB and a created VPC (3 AZs) WHEN the stack is synthesized
    doc, _ = build_stack(GpuInferenceStack, with_service(internet_facing=True, ingress_cidrs=("203.0.113.0/24",)))
    publics = {k: r for k, r in resources(doc, "aws_subnet").items() if r["tags"]["spotkit:tier"] == "public"}
    # THEN the VPC has a public subnet in each of the 3 AZs (an ALB routes only to targets in its AZs),
    # and the ALB sits in exactly those
    assert len(publics) == 3
    assert sorted(r["availability_zone"] for r in publics.values()) == sorted(
        r["availability_zone"] for r in resources(doc, "aws_subnet").values() if r["tags"]["spotkit:tier"] == "private")
    alb = one(doc, "aws_lb")
    assert alb["internal"] is False
    assert sorted(alb["subnets"]) == sorted(f"${{aws_subnet.{k}.id}}" for k in publics)
    # AND the tasks stay in the private subnets
    private = sorted(f"${{aws_subnet.{k}.id}}" for k, r in resources(doc, "aws_subnet").items()
                     if r["tags"]["spotkit:tier"] == "private")
    assert sorted(one(doc, "aws_ecs_service")["network_configuration"]["subnets"]) == private


def test_rejects_efs_cache_without_file_system_in_the_construct():
    # GIVEN the service construct asked for an EFS cache with neither an id nor a file system construct
    settings = dataclasses.replace(InferenceServiceSettings(), model_cache="efs", ingress_cidrs=("10.0.0.0/16",))
    with pytest.raises(ValidationError) as err:
        validate_service("llm", settings, ["subnet-a", "subnet-b"], has_file_system=False)
    assert str(err.value) == (
        "InferenceService 'llm': model_cache='efs' needs efs_file_system_id or a file system construct "
        "(model_cache_file_system): give one, or use model_cache='instance'"
    )


@pytest.fixture(scope="module")
def efs_stack():
    # GIVEN model_cache='efs' without a file system id WHEN the stack is synthesized
    doc, _ = build_stack(GpuInferenceStack, with_service(model_cache="efs"))
    return doc


def test_stack_creates_efs_model_cache_reachable_only_from_the_service(efs_stack):
    fs_key = next(iter(resources(efs_stack, "aws_efs_file_system")))
    ap_key = next(iter(resources(efs_stack, "aws_efs_access_point")))
    # THEN the file system is encrypted, with an access point at /models and a mount target per task subnet
    assert one(efs_stack, "aws_efs_file_system")["encrypted"] is True
    assert one(efs_stack, "aws_efs_access_point")["root_directory"]["path"] == "/models"
    assert len(resources(efs_stack, "aws_efs_mount_target")) == 3
    # AND the task mounts it over TLS through the access point with IAM
    (volume,) = one(efs_stack, "aws_ecs_task_definition")["volume"]
    assert volume["efs_volume_configuration"] == {
        "file_system_id": f"${{aws_efs_file_system.{fs_key}.id}}", "transit_encryption": "ENABLED",
        "authorization_config": {"access_point_id": f"${{aws_efs_access_point.{ap_key}.id}}", "iam": "ENABLED"},
    }
    # AND NFS is open to the service security group only
    sgs = {r["name_prefix"]: k for k, r in resources(efs_stack, "aws_security_group").items() if "name_prefix" in r}
    efs_sg = f"${{aws_security_group.{sgs['spotkit-gpu-models-efs-']}.id}}"
    nfs = [r for r in resources(efs_stack, "aws_vpc_security_group_ingress_rule").values() if r["security_group_id"] == efs_sg]
    assert [(r["referenced_security_group_id"], r["from_port"]) for r in nfs] == [
        (f"${{aws_security_group.{sgs['spotkit-gpu-svc-']}.id}}", 2049)]
    # AND the task role (not the instances) may mount through that access point only
    (task_role_key,) = [k for k, r in resources(efs_stack, "aws_iam_role").items() if r["name_prefix"] == "spotkit-gpu-task-"]
    (grant,) = [r for r in resources(efs_stack, "aws_iam_role_policy").values()
                if r["role"] == f"${{aws_iam_role.{task_role_key}.id}}"]
    (statement,) = json.loads(grant["policy"])["Statement"]
    assert statement["Action"] == ["elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"]
    assert statement["Condition"] == {"StringEquals": {
        "elasticfilesystem:AccessPointArn": f"${{aws_efs_access_point.{ap_key}.arn}}"}}
    # AND the instances do not prepare an instance-store cache
    assert "model-cache" not in local_value(efs_stack, "ecs_spot-group")


def test_stack_is_registered():
    from spotkit.stacks import registry

    assert registry.get("gpu_inference").load() == (GpuInferenceStack, GpuInferenceConfig)


@pytest.mark.terraform
def test_gpu_stacks_validate_with_provider_5_100(gpu_stack, custom_stack, efs_stack, tmp_path):
    needs_terraform()
    for label, doc in (("default", gpu_stack), ("custom", custom_stack), ("efs", efs_stack)):
        result = terraform_validate(doc, tmp_path / label)
        assert result.returncode == 0, f"{label}: {result.stdout}{result.stderr}"
        assert "The configuration is valid" in result.stdout


def test_readme_config_example_resolves():
    # GIVEN the YAML example of the README section WHEN it is applied to the default config
    import yaml

    from spotkit.config import apply_overrides

    data = yaml.safe_load("""
gpu_families: [g6e, g5, g6]
gpu_instance_size: 2xlarge
service:
  desired_count: 3
  on_demand_base: 1
  spot_overprovision: 1
  model_cache: efs
  container: {model_id: deepseek-ai/DeepSeek-R1-Distill-Qwen-14B, extra_args: ["--max-model-len", "16384"]}
""")
    config = apply_overrides(GpuInferenceConfig(), data, prefix="gpu_inference")
    cluster, service = resolve(config)
    # THEN the types, counts and cache are what the example says, and an EFS cache will be created
    assert cluster.spot.group.instance_types == ("g6e.2xlarge", "g5.2xlarge", "g6.2xlarge")
    assert (service.total_count, service.on_demand_base, service.model_cache) == (4, 1, "efs")
    assert service.container.model_id == "deepseek-ai/DeepSeek-R1-Distill-Qwen-14B"
    assert service.container.extra_args == ("--max-model-len", "16384")
    assert config.creates_model_cache_efs is True


def test_config_file_keys_change_the_stacks_defaults_not_the_constructs():
    from spotkit.config import apply_overrides

    # GIVEN a config file that only raises the replicas WHEN it is applied
    config = apply_overrides(GpuInferenceConfig(), {"service": {"desired_count": 4}}, prefix="gpu_inference")
    # THEN the rest is the stack's default policy: spot only, one spare, 3 AZs
    s = config.service
    assert (s.desired_count, s.on_demand_base, s.on_demand_weight, s.spot_weight, s.spot_overprovision) == (4, 0, 0, 4, 1)
    assert config.network.az_count == 3
    # AND the construct keeps its own defaults (it has no fallback): one replica on on-demand, no spare
    c = InferenceServiceSettings()
    assert (c.on_demand_base, c.on_demand_weight, c.spot_overprovision) == (1, 1, 0)


def test_rejects_gpu_tasks_on_a_cluster_without_gpus():
    from cdktn import Testing

    from spotkit.constructs.ecs_spot import EcsClusterSettings, EcsSpotCluster
    from spotkit.constructs.inference_service import InferenceService
    from spotkit.stacks.base import SpotkitStack, StackConfig

    # GIVEN a CPU cluster WHEN a service asks for 1 GPU per task THEN it is refused before any resource
    stack = SpotkitStack(Testing.app(), "t", StackConfig(name="t"))
    cluster = EcsSpotCluster(stack, "ecs", name="cpu", vpc_id="vpc-1", subnet_ids=["subnet-a", "subnet-b"],
                             settings=EcsClusterSettings())
    settings = dataclasses.replace(InferenceServiceSettings(), ingress_cidrs=("10.0.0.0/16",))
    with pytest.raises(ValidationError) as err:
        InferenceService(stack, "svc", name="llm", cluster=cluster, vpc_id="vpc-1", task_subnet_ids=["subnet-a"],
                         alb_subnet_ids=["subnet-a", "subnet-b"], settings=settings)
    assert str(err.value) == (
        "InferenceService 'llm': container.gpus_per_task is 1 but the cluster has gpu off: no instance would "
        "advertise GPUs; turn gpu on in the cluster settings or set gpus_per_task=0"
    )
    assert stack.node.try_find_child("svc") is None


def test_cli_refuses_a_deregistration_delay_beyond_the_notice(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    # GIVEN a config file with a 150 s deregistration delay WHEN the user synthesizes the stack
    cfg = tmp_path / "spotkit.yaml"
    cfg.write_text("gpu_inference:\n  service:\n    deregistration_delay_seconds: 150\n")
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-m", "spotkit.cli.main", "--config", str(cfg), "synth", "gpu_inference",
                             "--out", "o"], cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(root)},
                            capture_output=True, text=True, timeout=300)
    # THEN it exits 1 with the rule, and no traceback
    assert result.returncode == 1, result.stdout + result.stderr
    assert ("InferenceService 'spotkit-gpu': deregistration_delay_seconds is 150, above the 120-second spot notice"
            in result.stderr)
    assert "Traceback" not in result.stderr


def test_gpu_inference_routes_interruptions_by_default():
    import json as _json

    from spotkit.stacks.gpu_inference import GpuInferenceConfig, GpuInferenceStack
    from tests.support.synth import build_stack, resources

    doc, stack = build_stack(GpuInferenceStack, GpuInferenceConfig())
    rules = [_json.loads(r["event_pattern"]) for r in resources(doc, "aws_cloudwatch_event_rule").values()
             if "event_pattern" in r]  # the fallback check is a scheduled rule
    lifecycle = [r for r in rules if r.get("detail-type") == ["EC2 Instance-terminate Lifecycle Action"]]
    assert sorted(lifecycle[0]["detail"]["AutoScalingGroupName"]) == sorted(g.name for g in stack.cluster.groups.values())
    assert "interruption_queue_url" in doc["output"]


def _service_tags(config: GpuInferenceConfig) -> dict:
    from cdktn import Testing

    synthesized = json.loads(Testing.synth(GpuInferenceStack(Testing.app(), "s", config)))
    (service,) = synthesized["resource"]["aws_ecs_service"].values()
    return service.get("tags") or {}


@pytest.mark.parametrize("config, accepted", [
    (GpuInferenceConfig(), True),  # the defaults: a spare and the fallback cover a reclaim
    (with_service(on_demand_base=1, on_demand_weight=1, spot_overprovision=0), False),  # an on-demand base: nothing to accept
    (with_service(spot_overprovision=0), False),  # risky: warned, and SPOT010 must show
])
def test_spot010_is_suppressed_only_where_the_trade_off_is_covered(config, accepted):
    from spotkit.constructs.inference_service import SPOT_ONLY_ACCEPTED
    from spotkit.runtime.notice import TAG_SKIP_CHECK

    # GIVEN a gpu_inference stack WHEN it is synthesized THEN its service carries the SPOT010 suppression, with the
    # reason, exactly when it has no on-demand base and nothing in spot_only_risk fires
    tags = _service_tags(config)
    assert (tags.get(TAG_SKIP_CHECK) == SPOT_ONLY_ACCEPTED) is accepted
    assert (TAG_SKIP_CHECK in tags) is accepted
