"""GPU inference on spot: an OpenAI-compatible server (vLLM defaults, DeepSeek-R1 distill) on an ECS
cluster with GPU spot and on-demand capacity providers, behind an Application Load Balancer.

Serving rides out reclaims: by default the replicas run on spot with one spare, spread over 3 AZs, and
the capacity fallback launches on-demand into the spot group when spot cannot be launched (see
``default_service``); spot replicas are drained from the load balancer on the two-minute notice and
replaced by ECS managed scaling. ``service.on_demand_base`` keeps replicas on on-demand instead.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Optional

from cdktn import TerraformOutput
from constructs import Construct

from spotkit.constructs.compute_group import ComputeGroupSettings, InstanceRequirements
from spotkit.constructs.ecs_spot import CapacityProviderSettings, EcsClusterSettings, EcsSpotCluster, validate_cluster
from spotkit.constructs.efs_checkpoints import EfsCheckpoints, EfsCheckpointSettings, validate_efs
from spotkit.constructs.gpu import ECS_GPU_AMI_PARAMETER, instance_types_for, require_gpus_per_task
from spotkit.constructs.inference_service import InferenceService, InferenceServiceSettings, validate_service
from spotkit.constructs.capacity_fallback import FallbackSettings, validate_fallback
from spotkit.constructs.interruption_events import InterruptionEventsSettings
from spotkit.constructs.network import NetworkSettings, validate_network
from spotkit.stacks.base import SpotkitStack, StackConfig
from spotkit.errors import ValidationError


def _gpu_cluster() -> EcsClusterSettings:
    group = dict(min_size=0, root_volume_size_gib=200, health_check_grace_period=600)
    return EcsClusterSettings(
        gpu=True,
        spot=CapacityProviderSettings(group=ComputeGroupSettings(max_size=6, **group)),
        on_demand=CapacityProviderSettings(group=ComputeGroupSettings(
            max_size=2, on_demand_percentage_above_base=100, **group)),
        default_on_demand_base=1, default_on_demand_weight=1, default_spot_weight=4,
        agent_config={"ECS_IMAGE_PULL_BEHAVIOR": "prefer-cached"},
    )


def default_service() -> InferenceServiceSettings:
    """The stack's service defaults: 2 replicas wanted, all on spot (``on_demand_base`` 0,
    ``on_demand_weight`` 0, ``spot_weight`` 4) plus one spare spot replica (``spot_overprovision`` 1);
    with the stack's 3 AZs and its capacity fallback (on by default), which launches on-demand into the
    spot group when spot cannot be launched. The other fields are ``InferenceServiceSettings``'s.

    Why: replayed on the four kept spot traces (``spotkit simulate gpu_inference``, docs/simulate.md,
    spot at 0.35 of on-demand), this saves 35-44% against all on-demand on three of them, within 5 points
    of SpotHedge (SkyServe) at better availability (98.4-99.3%, against 97.6-98.9%). One replica always
    on on-demand (the construct's defaults: base 1, weights 1:4, no spare; over 2 AZs) saves 24-28%
    there, 13-19 points behind. On the fourth trace (V100 in us-east-1, 2023-02) spot had room in the
    stack's zones 17-47% of the time: both save under 7%, and SpotHedge, spread over other regions, 46%.

    ``on_demand_weight`` 0 matters: at 1:4, ECS puts one of the three replicas on on-demand anyway.
    To keep a replica on on-demand instead, set ``on_demand_base: 1`` and ``on_demand_weight: 1``.
    A config file's ``service`` keys change these defaults; in Python, start from them:
    ``dataclasses.replace(default_service(), desired_count=4)`` (a bare ``InferenceServiceSettings()``
    has the construct's defaults).
    """
    return InferenceServiceSettings(on_demand_base=0, on_demand_weight=0, spot_weight=4, spot_overprovision=1)


def default_network() -> NetworkSettings:
    """A created VPC over 3 AZs: the spare spot replica lands in a third zone (``default_service``)."""
    return NetworkSettings(az_count=3)


def _model_cache_efs() -> EfsCheckpointSettings:
    # Weights are re-downloadable and read at every start: no backup, no Infrequent Access (per-read fees).
    return EfsCheckpointSettings(root_directory="/models", root_permissions="0755", transition_to_ia=None,
                                 backup=False, mount_point="/mnt/models")


@dataclass(frozen=True)
class GpuInferenceConfig(StackConfig):
    """GPU inference settings. Defaults synthesize with no config.

    GPU instance choice (applied to both capacity providers' groups; the first that is set wins):
    - ``accelerators``: attribute-based selection (``accelerator_manufacturers=("nvidia",)``,
      ``accelerator_names``, ``accelerator_count_min``, ``accelerator_total_memory_mib_min``).
    - ``gpu_instance_types``: an explicit list, in priority order (``("p4d.24xlarge", "p5.48xlarge")``).
    - ``gpu_families`` + ``gpu_instance_size``: families of one size. Default g6, g5, g6e (L4, A10G,
      L40S) in ``xlarge``: three spot pools of one 24-48 GB GPU each.

    - ``ami_id`` / ``ami_ssm_parameter``: the image. Default: the GPU-optimized ECS AMI (Amazon Linux
      2023) read from its public SSM parameter.
    - ``network``: bring your own ``vpc_id``/``subnet_ids`` or a created VPC. Default: created, over 3
      AZs (``default_network``).
    - ``alb_subnet_ids``: subnets of the load balancer. Default: the task subnets (private) for the
      default internal ALB; for a public ALB (``service.internet_facing``), the created VPC's public
      subnets, one in each AZ of the tasks (an ALB sends nothing to targets in an AZ it is not in).
      With your own network, give public subnets in every AZ of the task subnets.
    - ``cluster``: capacity providers and agent (``gpu`` on; 0-6 spot, 0-2 on-demand, 200 GiB root).
    - ``service``: the inference service (see ``InferenceServiceSettings``). Default
      ``default_service``: 2 replicas on spot plus one spare spot replica, no on-demand base; the
      fallback stands in for an always-on on-demand replica: 35-44% saved against all on-demand on
      three of the kept traces, against 24-28% with one replica on on-demand (docs/simulate.md).
      ``ingress_cidrs`` defaults to the created VPC's range.
    - ``model_cache_efs``: the EFS file system created for ``service.model_cache='efs'`` when no
      ``service.efs_file_system_id`` is given (encrypted, TLS-only, access point ``/models``, mount
      targets in the task subnets, NFS only from the service). Default: no backup, no IA transition.
    - ``interruptions`` and ``fallback``: as in ``spotkit.stacks.ecs_spot.EcsSpotConfig`` (the same ECS
      cluster's groups, routed the same way by ``SpotkitStack.route_cluster_interruptions``). With
      ``service.on_demand_base`` 0 the fallback is what answers when spot is gone everywhere: off, or with
      no ``service.spot_overprovision``, the stack warns (``spotkit.constructs.inference_service.spot_only_risk``).
    """

    name: str = "spotkit-gpu"
    network: NetworkSettings = field(default_factory=default_network)
    gpu_families: tuple[str, ...] = ("g6", "g5", "g6e")
    gpu_instance_size: str = "xlarge"
    gpu_instance_types: tuple[str, ...] = ()
    accelerators: Optional[InstanceRequirements] = None
    ami_id: Optional[str] = None
    ami_ssm_parameter: str = ECS_GPU_AMI_PARAMETER
    alb_subnet_ids: tuple[str, ...] = ()
    cluster: EcsClusterSettings = field(default_factory=_gpu_cluster)
    service: InferenceServiceSettings = field(default_factory=default_service)
    model_cache_efs: EfsCheckpointSettings = field(default_factory=_model_cache_efs)
    interruptions: Optional[InterruptionEventsSettings] = field(default_factory=InterruptionEventsSettings)
    fallback: FallbackSettings = field(default_factory=FallbackSettings)

    @property
    def creates_model_cache_efs(self) -> bool:
        return self.service.model_cache == "efs" and not self.service.efs_file_system_id


def network_settings(config: GpuInferenceConfig) -> NetworkSettings:
    """The created VPC gets a public subnet in each AZ when a public ALB will live in them (an ALB routes
    only to targets in its own AZs)."""
    n = config.network
    if config.service.internet_facing and not config.alb_subnet_ids and not n.bring_your_own and n.nat_gateway:
        azs = len(n.availability_zones) or n.az_count
        return dataclasses.replace(n, public_subnet_count=max(azs, n.public_subnet_count))
    return n


def resolve(config: GpuInferenceConfig) -> tuple[EcsClusterSettings, InferenceServiceSettings]:
    """The cluster and service settings the stack builds, with the GPU choice applied; validates."""
    where = f"gpu_inference {config.name!r}"
    validate_network(network_settings(config))
    if config.accelerators is not None:
        types: tuple[str, ...] = ()
        choice = dict(instance_requirements=config.accelerators)
    else:
        types = config.gpu_instance_types or instance_types_for(config.gpu_families, config.gpu_instance_size, where)
        choice = dict(instance_types=types, instance_requirements=None)
    image = dict(ami_id=config.ami_id, ami_ssm_parameter=config.ami_ssm_parameter)
    cluster = dataclasses.replace(
        config.cluster,
        spot=dataclasses.replace(config.cluster.spot,
                                 group=dataclasses.replace(config.cluster.spot.group, **choice, **image)),
        on_demand=dataclasses.replace(config.cluster.on_demand,
                                      group=dataclasses.replace(config.cluster.on_demand.group, **choice, **image)),
    )
    validate_cluster(config.name, cluster)
    service = config.service
    if types and service.container.gpus_per_task > 0:
        require_gpus_per_task(where, types, service.container.gpus_per_task)
    if not service.ingress_cidrs and not config.network.bring_your_own:
        service = dataclasses.replace(service, ingress_cidrs=(config.network.cidr,))
    if service.internet_facing and not config.alb_subnet_ids and (
            config.network.bring_your_own or not config.network.nat_gateway):
        raise ValidationError(
            f"{where}: service.internet_facing needs public subnets in 2 AZs for the load balancer: pass "
            "alb_subnet_ids, or let the stack create its VPC (with nat_gateway on it gets 2 public subnets)")
    validate_service(config.name, service, config.alb_subnet_ids or ("task-subnet-a", "task-subnet-b"),
                     has_file_system=config.creates_model_cache_efs)
    if config.creates_model_cache_efs:
        validate_efs(f"{where}: model_cache_efs", config.model_cache_efs, ("task-subnets",))
    return cluster, service


class GpuInferenceStack(SpotkitStack):
    description = "GPU inference on spot"

    def __init__(self, scope: Construct, id_: str, config: GpuInferenceConfig = GpuInferenceConfig()):
        cluster_settings, service_settings = resolve(config)
        validate_fallback(f"gpu_inference {config.name!r}", config.fallback, routed=config.interruptions is not None)
        super().__init__(scope, id_, config)
        vpc_id, subnet_ids = self.resolve_network(network_settings(config))
        alb_subnet_ids = list(config.alb_subnet_ids)
        if not alb_subnet_ids:
            alb_subnet_ids = self.network.public_subnet_ids if service_settings.internet_facing else subnet_ids
        self.cluster = EcsSpotCluster(self, "ecs", name=config.name, vpc_id=vpc_id, subnet_ids=subnet_ids,
                                      settings=cluster_settings)
        self.model_cache_efs = None
        if config.creates_model_cache_efs:
            self.model_cache_efs = EfsCheckpoints(self, "model-cache", name=f"{config.name}-models", vpc_id=vpc_id,
                                                  subnet_ids=subnet_ids, settings=config.model_cache_efs)
        self.service = InferenceService(
            self, "inference", name=config.name, cluster=self.cluster, vpc_id=vpc_id, task_subnet_ids=subnet_ids,
            alb_subnet_ids=alb_subnet_ids, settings=service_settings,
            model_cache_file_system=self.model_cache_efs, on_demand_fallback=config.fallback.enabled,
        )
        self.route_cluster_interruptions(config.interruptions, self.cluster, config.fallback)
        TerraformOutput(self, "url", value=self.service.url)
        TerraformOutput(self, "cluster_name", value=self.cluster.cluster_name)
        TerraformOutput(self, "service_name", value=self.service.service.name)
        TerraformOutput(self, "service_security_group_id", value=self.service.service_security_group_id)
        TerraformOutput(self, "target_group_arn", value=self.service.target_group.arn)
        if self.model_cache_efs is not None:
            TerraformOutput(self, "model_cache_file_system_id", value=self.model_cache_efs.file_system.id)
