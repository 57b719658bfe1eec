"""ECS on spot: a cluster with a spot and an on-demand capacity provider, each backed by a compute group.

What it creates (aws-ecs / terraform-aws-ecs style, one construct):
- an ECS cluster with container insights on;
- two ``SpotComputeGroup``s from the foundation: ``<name>-spot`` (spot above an optional floor) and
  ``<name>-od`` (all on-demand), booting the ECS-optimized AMI (the GPU variant when ``gpu``);
- per group a capacity provider with managed scaling, managed termination protection (the group gets
  scale-in protection, which ECS then manages per instance) and managed draining;
- the cluster's default capacity provider strategy: a base of tasks on on-demand, weights between them;
- user data that joins the cluster, turns on spot instance draining (the agent sets the instance
  DRAINING on the two-minute notice, so ECS moves tasks and deregisters them from load balancers),
  bounds the container stop timeout inside the notice, and enables GPUs where the AMI has the drivers
  (a GPU cluster, or a group that boots a ``.../gpu/...`` AMI parameter).

Validation runs before any resource: managed termination protection needs managed scaling; scaling
step sizes and target capacity are in AWS's ranges; the stop timeout fits the notice; in a GPU cluster
every instance type has an NVIDIA GPU.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from constructs import Construct

from spotkit.constructs.annotations import warn
from spotkit.constructs.compute_group import DEFAULT_AMI_PARAMETER, ComputeGroupSettings, SpotComputeGroup
from spotkit.constructs.gpu import (
    ECS_AMI_PARAMETER,
    ECS_GPU_AMI_PARAMETER,
    require_gpu_instance_types,
    require_gpu_requirements,
)
from spotkit.constructs.user_data import UserDataPart
from spotkit.errors import ValidationError
from spotkit.runtime.notice import SPOT_NOTICE_SECONDS
ECS_INSTANCE_POLICY_ARN = "arn:aws:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role"
_CLUSTER_NAME = re.compile(r"^[a-z][a-z0-9-]{0,33}[a-z0-9]$")
_RESERVED_PREFIXES = ("aws", "ecs", "fargate")


@dataclass(frozen=True)
class ManagedScaling:
    """ECS managed scaling of one capacity provider's group.

    - ``enabled``: ECS sizes the group from the tasks that need placing. Default on (termination
      protection needs it).
    - ``target_capacity``: 1-100, percent of the group's capacity tasks should use; 100 leaves no spare
      instance, lower keeps headroom so a replacement task starts without waiting for a launch. Default 100.
    - ``minimum_scaling_step_size`` / ``maximum_scaling_step_size``: 1-10000 instances per scaling
      step. Defaults 1 and 10.
    - ``instance_warmup_period``: 0-10000 seconds before a new instance counts. Default 300.
    """

    enabled: bool = True
    target_capacity: int = 100
    minimum_scaling_step_size: int = 1
    maximum_scaling_step_size: int = 10
    instance_warmup_period: int = 300


@dataclass(frozen=True)
class CapacityProviderSettings:
    """One capacity provider and its compute group.

    - ``group``: the compute group settings (instance types, sizes, spot/on-demand split). The AMI
      defaults to the ECS-optimized one when left at the compute group default.
    - ``managed_scaling``: see ``ManagedScaling``.
    - ``managed_termination_protection``: ECS protects instances running tasks from scale-in; needs
      managed scaling, and sets ``protect_from_scale_in`` on the group. Default on.
    - ``managed_draining``: ECS drains an instance's tasks before the group terminates it. Default on.
    """

    group: ComputeGroupSettings = field(default_factory=ComputeGroupSettings)
    managed_scaling: ManagedScaling = field(default_factory=ManagedScaling)
    managed_termination_protection: bool = True
    managed_draining: bool = True


def _default_spot() -> CapacityProviderSettings:
    return CapacityProviderSettings(group=ComputeGroupSettings(min_size=0, max_size=6))


def _default_on_demand() -> CapacityProviderSettings:
    return CapacityProviderSettings(group=ComputeGroupSettings(
        instance_types=("m6i.large", "m6a.large"), min_size=0, max_size=2, on_demand_percentage_above_base=100))


@dataclass(frozen=True)
class EcsClusterSettings:
    """An ECS cluster on spot with an on-demand floor. Defaults are spot-safe.

    - ``spot`` / ``on_demand``: the two capacity providers. Default: 0-6 spot instances of three
      general-purpose types; 0-2 on-demand instances.
    - ``default_on_demand_base``: tasks always placed on on-demand by the cluster default strategy. Default 1.
    - ``default_on_demand_weight`` / ``default_spot_weight``: how tasks above the base split. Defaults 1 and 3.
      A weight of 0 means "never above the base"; at least one must be above 0.
    - ``container_insights``: CloudWatch Container Insights. Default on.
    - ``container_stop_timeout_seconds``: ``ECS_CONTAINER_STOP_TIMEOUT``, the SIGTERM-to-SIGKILL wait,
      1-120 and best well inside the two-minute notice. Default 30.
    - ``gpu``: the cluster runs GPU tasks: the GPU-optimized ECS AMI, ``ECS_ENABLE_GPU_SUPPORT=true``,
      and every instance type must have an NVIDIA GPU. Default off.
    - ``agent_config``: extra ``/etc/ecs/ecs.config`` lines (``{"ECS_IMAGE_PULL_BEHAVIOR": "prefer-cached"}``).
    - ``block_task_instance_metadata``: keep tasks off the instance role. Default on: ``awsvpc`` tasks by
      ``ECS_AWSVPC_BLOCK_IMDS=true``; ``bridge`` tasks by an IMDS hop limit of 1 on both groups (with IMDSv2
      required, a container one hop away never gets a token; the ECS agent and the spotkit agent use host
      networking and are not affected). Off: the groups' own ``metadata_hop_limit`` (2 by default) and no
      block, with a warning: only for tasks that must read instance metadata themselves.
    """

    spot: CapacityProviderSettings = field(default_factory=_default_spot)
    on_demand: CapacityProviderSettings = field(default_factory=_default_on_demand)
    default_on_demand_base: int = 1
    default_on_demand_weight: int = 1
    default_spot_weight: int = 3
    container_insights: bool = True
    container_stop_timeout_seconds: int = 30
    gpu: bool = False
    agent_config: Mapping[str, str] = field(default_factory=dict)
    block_task_instance_metadata: bool = True


def validate_cluster(name: str, s: EcsClusterSettings) -> None:
    where = f"EcsSpotCluster {name!r}"
    if not _CLUSTER_NAME.match(name) or name.startswith(_RESERVED_PREFIXES):
        raise ValidationError(
            f"{where}: name must be 2-35 lowercase letters, digits or hyphens, start with a letter and not "
            "with aws, ecs or fargate (it names the cluster, its capacity providers and groups)"
        )
    for label, cp in (("spot", s.spot), ("on_demand", s.on_demand)):
        cpw = f"{where}: capacity provider {label!r}"
        ms = cp.managed_scaling
        if cp.managed_termination_protection and not ms.enabled:
            raise ValidationError(
                f"{cpw}: managed termination protection needs managed scaling: enable "
                f"{label}.managed_scaling.enabled or set {label}.managed_termination_protection=False"
            )
        if not 1 <= ms.target_capacity <= 100:
            raise ValidationError(f"{cpw}: managed_scaling.target_capacity must be between 1 and 100 (got {ms.target_capacity})")
        for step_name in ("minimum_scaling_step_size", "maximum_scaling_step_size"):
            step = getattr(ms, step_name)
            if not 1 <= step <= 10000:
                raise ValidationError(f"{cpw}: managed_scaling.{step_name} must be between 1 and 10000 (got {step})")
        if ms.minimum_scaling_step_size > ms.maximum_scaling_step_size:
            raise ValidationError(
                f"{cpw}: managed_scaling.minimum_scaling_step_size ({ms.minimum_scaling_step_size}) is above "
                f"maximum_scaling_step_size ({ms.maximum_scaling_step_size})"
            )
        if not 0 <= ms.instance_warmup_period <= 10000:
            raise ValidationError(
                f"{cpw}: managed_scaling.instance_warmup_period must be between 0 and 10000 (got {ms.instance_warmup_period})")
        if s.gpu:
            if cp.group.instance_requirements is not None:
                require_gpu_requirements(cpw, cp.group.instance_requirements)
            else:
                require_gpu_instance_types(cpw, cp.group.instance_types)
    if s.on_demand.group.on_demand_percentage_above_base != 100:
        raise ValidationError(
            f"{where}: capacity provider 'on_demand' must be all on-demand: set "
            f"on_demand.group.on_demand_percentage_above_base=100 (got {s.on_demand.group.on_demand_percentage_above_base})"
        )
    validate_strategy(where, s.default_on_demand_base, s.default_on_demand_weight, s.default_spot_weight,
                      prefix="default_")
    if not 1 <= s.container_stop_timeout_seconds <= SPOT_NOTICE_SECONDS:
        raise ValidationError(
            f"{where}: container_stop_timeout_seconds must be between 1 and {SPOT_NOTICE_SECONDS} (got "
            f"{s.container_stop_timeout_seconds}): a spot instance is gone two minutes after the notice"
        )


def validate_strategy(where: str, base: int, on_demand_weight: int, spot_weight: int, prefix: str = "") -> None:
    if base < 0 or on_demand_weight < 0 or spot_weight < 0:
        raise ValidationError(f"{where}: {prefix}on_demand_base and the weights must be 0 or more")
    if on_demand_weight == 0 and spot_weight == 0:
        raise ValidationError(
            f"{where}: {prefix}on_demand_weight and {prefix}spot_weight are both 0: AWS places no task with "
            "that strategy; give spot a weight of 1 or more"
        )


def _with_ecs_defaults(group: ComputeGroupSettings, cp: CapacityProviderSettings, gpu: bool,
                       block_task_imds: bool = True) -> ComputeGroupSettings:
    """The group as ECS needs it: ECS AMI (unless chosen), scale-in protection for managed termination
    protection, the ``AmazonECSManaged`` tag ECS adds itself (declared so Terraform keeps it), and an IMDS
    hop limit of 1 when tasks are kept off the instance role."""
    changes: dict = {}
    if block_task_imds:
        changes["metadata_hop_limit"] = 1
    if group.ami_id is None and group.ami_ssm_parameter == DEFAULT_AMI_PARAMETER:
        changes["ami_ssm_parameter"] = ECS_GPU_AMI_PARAMETER if gpu else ECS_AMI_PARAMETER
    if cp.managed_termination_protection:
        changes["protect_from_scale_in"] = True
    if cp.managed_scaling.enabled:
        changes["tags"] = {**dict(group.tags), "AmazonECSManaged": "true"}
    return dataclasses.replace(group, **changes)


class EcsSpotCluster(Construct):
    """The cluster, its two compute groups and capacity providers.

    Capabilities:
    - ``strategy(on_demand_base, on_demand_weight, spot_weight)``: a service capacity provider strategy.
    - ``allow_ingress_from(security_group_id, port, description)``: open a port on both groups' instances.
    - ``add_user_data(part)``: a boot script part on both groups.
    """

    def __init__(self, scope: Construct, id_: str, *, name: str, vpc_id: str, subnet_ids: Sequence[str],
                 settings: EcsClusterSettings = EcsClusterSettings()):
        validate_cluster(name, settings)
        super().__init__(scope, id_)
        from cdktn_aws.ecs import AwsCluster as EcsCluster, AwsClusterCapacityProviders as EcsClusterCapacityProviders

        self.name = name
        self.settings = settings
        s = settings
        self._warn_risky_settings()
        self.cluster = EcsCluster(
            self, "cluster", name=name,
            setting=[EcsCluster.SettingProperty(name="containerInsights", value="enabled" if s.container_insights else "disabled")],
        )

        self.groups: dict[str, SpotComputeGroup] = {}
        self.providers: dict = {}
        for label, suffix, cp in (("spot", "spot", s.spot), ("on_demand", "od", s.on_demand)):
            self._add_group(label, f"{name}-{suffix}", cp, vpc_id, subnet_ids)

        self.spot_group = self.groups["spot"]
        self.on_demand_group = self.groups["on_demand"]
        self.spot_provider_name = self.providers["spot"].name
        self.on_demand_provider_name = self.providers["on_demand"].name

        self.capacity_providers = EcsClusterCapacityProviders(
            self, "capacity-providers",
            cluster_name=self.cluster.name,
            capacity_providers=[self.on_demand_provider_name, self.spot_provider_name],
            default_capacity_provider_strategy=[
                EcsClusterCapacityProviders.DefaultCapacityProviderStrategyProperty(capacity_provider=self.on_demand_provider_name, base=s.default_on_demand_base,
                                weight=s.default_on_demand_weight),
                EcsClusterCapacityProviders.DefaultCapacityProviderStrategyProperty(capacity_provider=self.spot_provider_name, base=0, weight=s.default_spot_weight),
            ],
        )

    # --- resources --------------------------------------------------------------------------

    def _warn_risky_settings(self) -> None:
        """Legal settings that cost data or capacity on a reclaim: warnings, not errors."""
        name, s = self.name, self.settings
        if s.container_stop_timeout_seconds > 90:
            warn(self, f"EcsSpotCluster {name!r}: container_stop_timeout_seconds={s.container_stop_timeout_seconds} "
                       "leaves under 30 s of the two-minute notice for load balancer deregistration")
        if s.default_on_demand_base > 0 and s.default_on_demand_weight == 0:
            warn(self, f"EcsSpotCluster {name!r}: default_on_demand_weight=0 with default_on_demand_base="
                       f"{s.default_on_demand_base}: AWS documents that a provider of weight 0 is not used to place "
                       "tasks, so the on-demand base may stay unplaced; give it a weight of 1 or more")
        if not s.container_insights:
            warn(self, f"EcsSpotCluster {name!r}: container insights are off: task and instance metrics during a "
                       "spot reclaim will be missing")

        if not s.block_task_instance_metadata:
            warn(self, f"EcsSpotCluster {name!r}: block_task_instance_metadata is off: tasks can read the instance "
                       "role's credentials from instance metadata (IMDS hop limit "
                       f"{s.spot.group.metadata_hop_limit}/{s.on_demand.group.metadata_hop_limit}, awsvpc tasks not "
                       "blocked); give tasks their own task role and turn it back on unless they need IMDS")

    def _add_group(self, label: str, group_name: str, cp: CapacityProviderSettings, vpc_id: str,
                   subnet_ids: Sequence[str]) -> None:
        """One compute group (``spot`` or ``on_demand``) with the ECS agent's policy and boot part, and its
        capacity provider."""
        from cdktn_aws.iam import AwsRolePolicyAttachment as IamRolePolicyAttachment

        s = self.settings
        group = SpotComputeGroup(
            self, f"{label}-group", name=group_name, vpc_id=vpc_id, subnet_ids=subnet_ids,
            settings=_with_ecs_defaults(cp.group, cp, s.gpu, s.block_task_instance_metadata),
        )
        IamRolePolicyAttachment(self, f"{label}-ecs-agent", role=group.role.name, policy_arn=ECS_INSTANCE_POLICY_ARN)
        if cp.group.protect_from_scale_in and not cp.managed_termination_protection:
            warn(self, f"EcsSpotCluster {self.name!r}: {label}.group.protect_from_scale_in without managed termination "
                       "protection: nothing lifts the protection, so the group never scales in")
        self.groups[label] = group
        group.add_user_data(self._agent_part(label))
        self.providers[label] = self._capacity_provider(label, group_name, group, cp)

    # --- capabilities -----------------------------------------------------------------------

    def strategy(self, on_demand_base: int, on_demand_weight: int, spot_weight: int, where: str = "") -> list:
        """A service's capacity provider strategy: ``on_demand_base`` tasks on on-demand, the rest split
        by weight. The returned structs also name the cluster association, so a service that uses them
        should depend on ``capacity_providers``."""
        from cdktn_aws.ecs import AwsService as EcsService

        validate_strategy(where or f"EcsSpotCluster {self.name!r}", on_demand_base, on_demand_weight, spot_weight)
        return [
            EcsService.CapacityProviderStrategyProperty(capacity_provider=self.on_demand_provider_name, base=on_demand_base, weight=on_demand_weight),
            EcsService.CapacityProviderStrategyProperty(capacity_provider=self.spot_provider_name, base=0, weight=spot_weight),
        ]

    def allow_ingress_from(self, source_security_group_id: str, port: int, description: str) -> None:
        for group in self.groups.values():
            group.allow_ingress_from(source_security_group_id, port, description)

    def add_user_data(self, part: UserDataPart) -> None:
        for group in self.groups.values():
            group.add_user_data(part)

    @property
    def cluster_name(self) -> str:
        return self.cluster.name

    @property
    def cluster_arn(self) -> str:
        return self.cluster.arn

    @property
    def security_group_ids(self) -> list[str]:
        return [g.security_group_id for g in self.groups.values()]

    # --- resources --------------------------------------------------------------------------

    def gpu_capable(self, label: str) -> bool:
        """GPU support goes on where the AMI has the NVIDIA driver: a GPU cluster, or a group booting a GPU
        AMI parameter (``.../gpu/...``) by choice."""
        group = self.groups[label].settings
        return self.settings.gpu or (group.ami_id is None and "/gpu/" in group.ami_ssm_parameter)

    def agent_config(self, label: str) -> dict[str, str]:
        s = self.settings
        config = {
            "ECS_CLUSTER": self.name,
            "ECS_ENABLE_SPOT_INSTANCE_DRAINING": "true",
            "ECS_CONTAINER_STOP_TIMEOUT": f"{s.container_stop_timeout_seconds}s",
            "ECS_ENABLE_CONTAINER_METADATA": "true",
            "ECS_INSTANCE_ATTRIBUTES": json.dumps({"spotkit.capacity": label}, separators=(",", ":")),
            # The container instance carries the EC2 tags (spotkit:group): the handler may drain only those.
            "ECS_CONTAINER_INSTANCE_PROPAGATE_TAGS_FROM": "ec2_instance",
        }
        if s.block_task_instance_metadata:
            config["ECS_AWSVPC_BLOCK_IMDS"] = "true"
        if self.gpu_capable(label):
            config["ECS_ENABLE_GPU_SUPPORT"] = "true"
        config.update(dict(s.agent_config))
        return config

    def _agent_part(self, label: str) -> UserDataPart:
        lines = "\n".join(f"{k}={v}" for k, v in self.agent_config(label).items())
        script = (
            "# Join the ECS cluster; drain on the spot two-minute notice; stop containers within it.\n"
            "mkdir -p /etc/ecs\n"
            f"cat >> /etc/ecs/ecs.config <<'SPOTKIT_ECS'\n{lines}\nSPOTKIT_ECS\n"
        )
        return UserDataPart("ecs-agent", script, order=5)

    def _capacity_provider(self, label: str, provider_name: str, group: SpotComputeGroup, cp: CapacityProviderSettings):
        from cdktn_aws.ecs import AwsCapacityProvider as EcsCapacityProvider

        ms = cp.managed_scaling
        return EcsCapacityProvider(
            self, f"{label}-provider",
            name=provider_name,
            auto_scaling_group_provider=EcsCapacityProvider.AutoScalingGroupProviderProperty(
                auto_scaling_group_arn=group.group_arn,
                managed_termination_protection="ENABLED" if cp.managed_termination_protection else "DISABLED",
                managed_draining="ENABLED" if cp.managed_draining else "DISABLED",
                managed_scaling=EcsCapacityProvider.ManagedScalingProperty(
                    status="ENABLED" if ms.enabled else "DISABLED",
                    target_capacity=ms.target_capacity,
                    minimum_scaling_step_size=ms.minimum_scaling_step_size,
                    maximum_scaling_step_size=ms.maximum_scaling_step_size,
                    instance_warmup_period=ms.instance_warmup_period,
                ),
            ),
        )
