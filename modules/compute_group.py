"""The spot compute group: a mixed-instances Auto Scaling group built to lose spot capacity safely.

What it creates (terraform-aws-autoscaling style, one construct):
- a launch template with IMDSv2 required (hop limit 2 so containers reach IMDS), an encrypted gp3
  root volume, user data assembled from parts, tags on instances and volumes (``spotkit:group``);
- an instance profile whose role has SSM core access (Run Command for checkpoint hooks) and may only
  complete and heartbeat lifecycle actions of this group;
- a security group with egress only (``security_group_id=None`` means "create one");
- the group: a mixed instances policy (explicit overrides with weights, or attribute-based instance
  requirements), ``price-capacity-optimized`` spot by default, an on-demand floor, several subnets,
  capacity rebalancing on, a termination lifecycle hook so instances can drain, rolling instance
  refresh, and desired capacity left to scaling after creation.

Every rule AWS or spot safety imposes is checked in the constructor, before any resource exists.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

from cdktn import TerraformResourceLifecycle
from constructs import Construct

from spotkit.constructs.agent_user_data import AgentSettings, agent_user_data_part, validate_agent_settings
from spotkit.constructs.annotations import warn
from spotkit.constructs.checks import require_at_least
from spotkit.constructs.hibernation import (
    HibernationSettings,
    WarmPoolSettings,
    hibernation_root_size,
    validate_hibernation,
    validate_warm_pool,
)
from spotkit.constructs.instance_role import egress_only_security_group, instance_role
from spotkit.constructs.tags import check_tags
from spotkit.constructs.user_data import UserData, UserDataPart
from spotkit.errors import ValidationError
from spotkit.runtime.notice import DEFAULT_LIFECYCLE_SECONDS, DRAIN_HOOK_NAME, TAG_GROUP, TAG_MANAGED, TERMINATING_TRANSITION

SPOT_ALLOCATION_STRATEGIES = (
    "price-capacity-optimized",
    "capacity-optimized",
    "capacity-optimized-prioritized",
    "lowest-price",
)
ON_DEMAND_ALLOCATION_STRATEGIES = ("prioritized", "lowest-price")
ACCELERATOR_MANUFACTURERS = ("nvidia", "amd", "amazon-web-services", "xilinx", "habana")
HEARTBEAT_MIN_SECONDS = 30
HEARTBEAT_MAX_SECONDS = 7200
GROUP_TAG = TAG_GROUP  # the names other modules import; the contract is toolkit.notice's
DEFAULT_AMI_PARAMETER = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,38}[a-z0-9]$")


@dataclass(frozen=True)
class InstanceRequirements:
    """Attribute-based instance selection (AWS picks every type that matches).

    Accelerator fields select GPUs: ``accelerator_manufacturers=("nvidia",)``,
    ``accelerator_names=("a10g", "l4", "l40s")``, ``accelerator_count_min=1``.
    """

    vcpu_min: int = 2
    vcpu_max: Optional[int] = None
    memory_mib_min: int = 4096
    memory_mib_max: Optional[int] = None
    accelerator_count_min: Optional[int] = None
    accelerator_count_max: Optional[int] = None
    accelerator_manufacturers: tuple[str, ...] = ()
    accelerator_names: tuple[str, ...] = ()
    accelerator_total_memory_mib_min: Optional[int] = None
    allowed_instance_types: tuple[str, ...] = ()
    excluded_instance_types: tuple[str, ...] = ()
    burstable_performance: str = "excluded"

    @property
    def wants_accelerators(self) -> bool:
        return bool(self.accelerator_count_min or self.accelerator_manufacturers or self.accelerator_names)

    def to_terraform(self) -> dict:
        req: dict = {
            "vcpu_count": _range(self.vcpu_min, self.vcpu_max),
            "memory_mib": _range(self.memory_mib_min, self.memory_mib_max),
            "burstable_performance": self.burstable_performance,
        }
        if self.wants_accelerators:
            req["accelerator_types"] = ["gpu"]
            req["accelerator_count"] = _range(self.accelerator_count_min or 1, self.accelerator_count_max)
        if self.accelerator_manufacturers:
            req["accelerator_manufacturers"] = list(self.accelerator_manufacturers)
        if self.accelerator_names:
            req["accelerator_names"] = list(self.accelerator_names)
        if self.accelerator_total_memory_mib_min:
            req["accelerator_total_memory_mib"] = {"min": self.accelerator_total_memory_mib_min}
        if self.allowed_instance_types:
            req["allowed_instance_types"] = list(self.allowed_instance_types)
        if self.excluded_instance_types:
            req["excluded_instance_types"] = list(self.excluded_instance_types)
        return req


def _range(lo: Optional[int], hi: Optional[int]) -> dict:
    out: dict = {}
    if lo is not None:
        out["min"] = lo
    if hi is not None:
        out["max"] = hi
    return out


@dataclass(frozen=True)
class ComputeGroupSettings:
    """Tunable settings of a spot compute group. Defaults are spot-safe.

    - ``instance_types``: explicit overrides, in priority order. Default: three general-purpose types
      of the same size, so losing one spot pool leaves two. Ignored when ``instance_requirements`` is set.
    - ``instance_weights``: capacity units per type (``{"m6i.2xlarge": 2}``). Default: every type counts 1.
    - ``instance_requirements``: attribute-based selection instead of a list. Default: none (use the list).
    - ``min_size`` / ``max_size`` / ``desired_capacity``: group bounds. ``desired_capacity`` applies at
      creation only; later changes by scaling are not reverted by Terraform. Default: desired = min.
    - ``on_demand_base_capacity``: instances always on-demand, a floor that survives losing all spot. Default 0.
    - ``on_demand_percentage_above_base``: 0-100; 0 means all spot above the base. Default 0.
    - ``spot_allocation_strategy``: one of price-capacity-optimized (default), capacity-optimized,
      capacity-optimized-prioritized, lowest-price.
    - ``on_demand_allocation_strategy``: prioritized (default, follows the list order) or lowest-price.
    - ``spot_max_price``: a cap in USD per hour. Default: none (pay the spot price, capped at on-demand);
      setting one gets a warning, because a cap adds interruptions when prices rise.
    - ``capacity_rebalance``: launch a replacement on a rebalance recommendation. Default on.
    - ``lifecycle_hook_heartbeat_seconds``: how long a terminating instance may drain, 30-7200. Default 300.
    - ``lifecycle_hook_default_result``: CONTINUE (default) or ABANDON when the heartbeat runs out.
    - ``create_lifecycle_hook``: add the termination hook. Default on.
    - ``ami_id``: image to boot. Default: latest Amazon Linux 2023 from the public SSM parameter
      ``ami_ssm_parameter``.
    - ``root_volume_size_gib`` / ``root_volume_type``: encrypted root volume. Defaults 50 GiB gp3.
    - ``kms_key_id``: key for EBS encryption. Default: the account's default EBS key.
    - ``metadata_hop_limit``: IMDS response hop limit; 2 lets containers reach IMDSv2. Default 2.
    - ``instance_refresh_min_healthy_percentage``: rolling refresh floor. Default 90.
    - ``health_check_grace_period``: seconds before health checks count. Default 300.
    - ``protect_from_scale_in``: needed by ECS managed termination protection. Default off.
    - ``tags``: extra tags on the group, its instances and volumes.
    - ``hibernation``: launch-template hibernation (``spotkit.constructs.hibernation``). Default off.
    - ``warm_pool``: a warm pool (``Hibernated`` by default) with reuse on scale-in; AWS allows it only on an
      all-on-demand group of one instance type. Default: none.
    - ``install_agent``: install and start the interruption agent at boot (``spotkit.constructs.agent_user_data``):
      checkpoint hook, SIGTERM and lifecycle completion on a spot or Auto Scaling notice. Default on.
    - ``agent``: how the agent is installed and what it runs (``AgentSettings``). Default: the zipapp the
      stack ships (``spotkit.constructs.agent_artifact``, sha256-checked at boot; the role may read that one S3 key),
      hook ``/etc/spotkit/on-notice``, workload pid in ``/run/spotkit/workload.pid``.
    """

    instance_types: tuple[str, ...] = ("m6i.large", "m6a.large", "m5.large")
    instance_weights: Mapping[str, int] = field(default_factory=dict)
    instance_requirements: Optional[InstanceRequirements] = None
    min_size: int = 0
    max_size: int = 4
    desired_capacity: Optional[int] = None
    on_demand_base_capacity: int = 0
    on_demand_percentage_above_base: int = 0
    spot_allocation_strategy: str = "price-capacity-optimized"
    on_demand_allocation_strategy: str = "prioritized"
    spot_max_price: Optional[str] = None
    capacity_rebalance: bool = True
    lifecycle_hook_heartbeat_seconds: int = DEFAULT_LIFECYCLE_SECONDS
    lifecycle_hook_default_result: str = "CONTINUE"
    create_lifecycle_hook: bool = True
    ami_id: Optional[str] = None
    ami_ssm_parameter: str = DEFAULT_AMI_PARAMETER
    root_volume_size_gib: int = 50
    root_volume_type: str = "gp3"
    kms_key_id: Optional[str] = None
    metadata_hop_limit: int = 2
    instance_refresh_min_healthy_percentage: int = 90
    health_check_grace_period: int = 300
    protect_from_scale_in: bool = False
    tags: Mapping[str, str] = field(default_factory=dict)
    hibernation: HibernationSettings = field(default_factory=HibernationSettings)
    warm_pool: Optional[WarmPoolSettings] = None
    install_agent: bool = True
    agent: AgentSettings = field(default_factory=AgentSettings)

    @property
    def uses_spot(self) -> bool:
        return self.on_demand_percentage_above_base < 100 and self.max_size > self.on_demand_base_capacity


def validate_settings(name: str, settings: ComputeGroupSettings, subnet_ids: Sequence[str]) -> None:
    """Raise ValidationError naming the props and the fix; runs before any resource is created."""
    s = settings
    where = f"SpotComputeGroup {name!r}"
    if not _NAME.match(name):
        raise ValidationError(
            f"{where}: name must be 2-40 lowercase letters, digits or hyphens, starting with a letter "
            "(it names the Auto Scaling group and its tags)"
        )
    check_tags(s.tags, where, in_instance_metadata=True)
    _validate_capacity(where, s)
    _validate_allocation(where, s)
    _validate_lifecycle_hook(where, s)
    if s.instance_requirements is None:
        _validate_instance_types(where, s)
    else:
        _validate_instance_requirements(where, s)
    _validate_launch(where, s, subnet_ids)
    types = () if s.instance_requirements is not None else tuple(dict.fromkeys(s.instance_types))
    validate_hibernation(where, types, s.hibernation, root_encrypted=True)
    validate_warm_pool(where, s.warm_pool, hibernation_enabled=s.hibernation.enabled, uses_spot=s.uses_spot,
                       instance_type_count=len(types), uses_requirements=s.instance_requirements is not None,
                       max_size=s.max_size)
    if s.install_agent:
        validate_agent_settings(where, s.agent)


def _validate_capacity(where: str, s: ComputeGroupSettings) -> None:
    """Sizes, and the on-demand part of them."""
    if s.min_size < 0 or s.max_size < 0:
        raise ValidationError(f"{where}: min_size and max_size must be 0 or more (got {s.min_size} and {s.max_size})")
    if s.min_size > s.max_size:
        raise ValidationError(
            f"{where}: min_size ({s.min_size}) is greater than max_size ({s.max_size}): raise max_size or lower min_size"
        )
    if s.desired_capacity is not None and not s.min_size <= s.desired_capacity <= s.max_size:
        raise ValidationError(
            f"{where}: desired_capacity ({s.desired_capacity}) must lie between min_size ({s.min_size}) "
            f"and max_size ({s.max_size})"
        )
    if not 0 <= s.on_demand_percentage_above_base <= 100:
        raise ValidationError(
            f"{where}: on_demand_percentage_above_base must be between 0 and 100 (got "
            f"{s.on_demand_percentage_above_base}): use 0 for all spot above the base, 100 for all on-demand"
        )
    require_at_least(where, "on_demand_base_capacity", s.on_demand_base_capacity, 0)
    if s.on_demand_base_capacity > s.max_size:
        raise ValidationError(
            f"{where}: on_demand_base_capacity ({s.on_demand_base_capacity}) is above max_size ({s.max_size}): "
            "the group could never reach its on-demand floor; raise max_size or lower on_demand_base_capacity"
        )


def _validate_allocation(where: str, s: ComputeGroupSettings) -> None:
    """The allocation strategies AWS accepts."""
    if s.spot_allocation_strategy not in SPOT_ALLOCATION_STRATEGIES:
        raise ValidationError(
            f"{where}: spot_allocation_strategy {s.spot_allocation_strategy!r} is not accepted by AWS: "
            f"use one of {', '.join(SPOT_ALLOCATION_STRATEGIES)} (price-capacity-optimized is recommended)"
        )
    if s.on_demand_allocation_strategy not in ON_DEMAND_ALLOCATION_STRATEGIES:
        raise ValidationError(
            f"{where}: on_demand_allocation_strategy {s.on_demand_allocation_strategy!r} is not accepted by AWS: "
            f"use one of {', '.join(ON_DEMAND_ALLOCATION_STRATEGIES)}"
        )


def _validate_lifecycle_hook(where: str, s: ComputeGroupSettings) -> None:
    """The drain hook's heartbeat and default result."""
    if not HEARTBEAT_MIN_SECONDS <= s.lifecycle_hook_heartbeat_seconds <= HEARTBEAT_MAX_SECONDS:
        raise ValidationError(
            f"{where}: lifecycle_hook_heartbeat_seconds must be between {HEARTBEAT_MIN_SECONDS} and "
            f"{HEARTBEAT_MAX_SECONDS} (got {s.lifecycle_hook_heartbeat_seconds}); 300 leaves time to drain "
            "within a typical checkpoint"
        )
    if s.lifecycle_hook_default_result not in ("CONTINUE", "ABANDON"):
        raise ValidationError(
            f"{where}: lifecycle_hook_default_result must be CONTINUE or ABANDON (got {s.lifecycle_hook_default_result!r})"
        )


def _validate_instance_types(where: str, s: ComputeGroupSettings) -> None:
    """A list of instance types: enough spot pools, and weights only for listed types."""
    if s.uses_spot and len(set(s.instance_types)) < 2:
        raise ValidationError(
            f"{where}: a group that uses spot needs at least 2 instance types (got "
            f"{len(set(s.instance_types))}: {', '.join(s.instance_types) or 'none'}); losing one spot pool "
            "would take the whole group. Add instance types (3 or more recommended), use "
            "instance_requirements, or set on_demand_percentage_above_base=100"
        )
    unknown = sorted(set(s.instance_weights) - set(s.instance_types))
    if unknown:
        raise ValidationError(
            f"{where}: instance_weights names types that are not in instance_types: {', '.join(unknown)}"
        )
    bad = sorted(k for k, w in s.instance_weights.items() if not 1 <= int(w) <= 999)
    if bad:
        raise ValidationError(f"{where}: instance_weights must be between 1 and 999 (check {', '.join(bad)})")


def _validate_instance_requirements(where: str, s: ComputeGroupSettings) -> None:
    bad_makers = sorted(set(s.instance_requirements.accelerator_manufacturers) - set(ACCELERATOR_MANUFACTURERS))
    if bad_makers:
        raise ValidationError(
            f"{where}: instance_requirements.accelerator_manufacturers has {', '.join(bad_makers)}: "
            f"use {', '.join(ACCELERATOR_MANUFACTURERS)}"
        )


def _validate_launch(where: str, s: ComputeGroupSettings, subnet_ids: Sequence[str]) -> None:
    """What the launch template and the group's placement need."""
    if not 1 <= s.metadata_hop_limit <= 64:
        raise ValidationError(f"{where}: metadata_hop_limit must be between 1 and 64 (got {s.metadata_hop_limit})")
    if s.root_volume_size_gib < 8:
        raise ValidationError(f"{where}: root_volume_size_gib must be at least 8 (got {s.root_volume_size_gib})")
    if not subnet_ids:
        raise ValidationError(f"{where}: subnet_ids is empty: give at least one subnet (two or more AZs recommended)")


class SpotComputeGroup(Construct):
    """A mixed-instances Auto Scaling group for spot, with its launch template, role and security group.

    Capabilities:
    - ``add_user_data(part)``: add a boot script part (EFS mount, agent...).
    - ``allow_ingress_from(security_group_id, port, description)``: open a port to a peer group.
    - ``add_to_role_policy(statement)``: extend the instance role (kept in one audited place).
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        name: str,
        vpc_id: str,
        subnet_ids: Sequence[str],
        settings: ComputeGroupSettings = ComputeGroupSettings(),
        security_group_id: Optional[str] = None,
        extra_launch_template: Optional[Mapping] = None,
    ):
        validate_settings(name, settings, subnet_ids)
        super().__init__(scope, id_)
        self.name = name
        self.settings = settings
        self.subnet_ids = list(subnet_ids)
        self.vpc_id = vpc_id
        self._policy_statements: list[dict] = []
        self._extra_launch_template = dict(extra_launch_template or {})

        if len(self.subnet_ids) == 1:
            warn(self, f"SpotComputeGroup {name!r}: a single subnet puts every instance in one AZ; "
                       "a spot reclaim in that AZ takes them all. Give subnets in 2 or more AZs.")
        if settings.spot_max_price:
            warn(self, f"SpotComputeGroup {name!r}: spot_max_price={settings.spot_max_price} adds interruptions "
                       "whenever the spot price rises above it; leave it unset to pay at most the on-demand price.")

        self.tags = {GROUP_TAG: name, TAG_MANAGED: "true", **dict(settings.tags)}
        self.user_data = UserData(self, f"{name}_user_data".replace("-", "_"))
        shipped = None
        if settings.install_agent and settings.agent.package_spec is None:
            from spotkit.constructs.agent_artifact import AgentArtifact

            shipped = AgentArtifact.for_stack(self)  # the stack's one agent artifact (S3 object + sha256)
        if settings.install_agent:
            self.add_user_data(agent_user_data_part(settings.agent,
                                                    lifecycle_heartbeat=settings.lifecycle_hook_heartbeat_seconds,
                                                    artifact=shipped.ref if shipped else None))
        self._create_security_group(security_group_id)
        self._create_role()
        if shipped is not None:
            shipped.grant_read(self)  # s3:GetObject on that one key, nothing else
        self._create_launch_template()
        self._create_group()

    # --- capabilities -----------------------------------------------------------------------

    def add_user_data(self, part: UserDataPart) -> None:
        self.user_data.add_part(part)

    def allow_ingress_from(self, source_security_group_id: str, port: int, description: str) -> None:
        from cdktn_aws.vpc import AwsSecurityGroupIngressRule as VpcSecurityGroupIngressRule

        VpcSecurityGroupIngressRule(
            self, f"ingress-{port}-{len(self.node.children)}",
            security_group_id=self.security_group_id,
            referenced_security_group_id=source_security_group_id,
            ip_protocol="tcp", from_port=port, to_port=port, description=description,
        )

    def add_to_role_policy(self, statement: Mapping) -> None:
        self._policy_statements.append(dict(statement))

    # --- resources --------------------------------------------------------------------------

    def _create_security_group(self, security_group_id: Optional[str]) -> None:
        if security_group_id:
            self.security_group_id = security_group_id
            return
        self.security_group_id = egress_only_security_group(
            self, name=self.name, vpc_id=self.vpc_id, tags=self.tags,
            description=f"spotkit compute group {self.name}: egress only; peers are added by allow_ingress_from",
        ).id

    def _create_role(self) -> None:
        self.role, self.instance_profile = instance_role(self, name=self.name, tags=self.tags,
                                                         statements=self._policy_statements, profile_tags=self.tags)
        self.add_to_role_policy({
            "Sid": "DrainOwnGroup",
            "Effect": "Allow",
            "Action": ["autoscaling:CompleteLifecycleAction", "autoscaling:RecordLifecycleActionHeartbeat"],
            "Resource": f"arn:aws:autoscaling:*:*:autoScalingGroup:*:autoScalingGroupName/{self.name}",
        })

    def _image_id(self) -> str:
        if self.settings.ami_id:
            return self.settings.ami_id
        from cdktn_aws.ssm import DataAwsParameter as DataAwsSsmParameter

        param = DataAwsSsmParameter(self, "ami", name=self.settings.ami_ssm_parameter)
        return param.value

    def _create_launch_template(self) -> None:
        from cdktn_aws.ec2 import AwsLaunchTemplate as LaunchTemplate

        s = self.settings
        root = {
            "device_name": "/dev/xvda",
            "ebs": {
                "volume_size": (hibernation_root_size(s.instance_types, s.hibernation, s.root_volume_size_gib)
                                if s.hibernation.enabled else s.root_volume_size_gib),
                "volume_type": s.root_volume_type,
                "encrypted": "true",
                "delete_on_termination": "true",
                **({"kms_key_id": s.kms_key_id} if s.kms_key_id else {}),
            },
        }

        self.launch_template = LaunchTemplate(
            self, "launch-template",
            name_prefix=f"{self.name}-",
            description=f"spotkit compute group {self.name}",
            image_id=self._image_id(),
            update_default_version=True,
            iam_instance_profile=LaunchTemplate.IamInstanceProfileProperty(arn=self.instance_profile.arn),
            vpc_security_group_ids=[self.security_group_id],
            metadata_options=LaunchTemplate.MetadataOptionsProperty(
                http_endpoint="enabled",
                http_tokens="required",
                http_put_response_hop_limit=s.metadata_hop_limit,
                instance_metadata_tags="enabled",
            ),
            monitoring=LaunchTemplate.MonitoringProperty(enabled=True),
            user_data=self.user_data.base64,
            tag_specifications=[
                LaunchTemplate.TagSpecificationsProperty(resource_type="instance", tags=self.tags),
                LaunchTemplate.TagSpecificationsProperty(resource_type="volume", tags=self.tags),
            ],
            tags=self.tags,
            **self._extra_launch_template,
        )
        self.launch_template.add_override("block_device_mappings", [root])
        if s.hibernation.enabled:
            self.launch_template.add_override("hibernation_options", {"configured": True})
        if s.warm_pool is not None:  # one on-demand type, no mixed instances policy (validated)
            self.launch_template.add_override("instance_type", s.instance_types[0])

    def _mixed_instances_policy(self):
        from cdktn_aws.auto_scaling import AwsGroup as AutoscalingGroup

        s = self.settings
        if s.instance_requirements is not None:
            overrides = [AutoscalingGroup.OverrideProperty()]
        else:
            overrides = [
                AutoscalingGroup.OverrideProperty(instance_type=t, weighted_capacity=str(s.instance_weights[t]) if t in s.instance_weights else None)
                for t in s.instance_types
            ]
        return AutoscalingGroup.MixedInstancesPolicyProperty(
            instances_distribution=AutoscalingGroup.InstancesDistributionProperty(
                on_demand_base_capacity=s.on_demand_base_capacity,
                on_demand_percentage_above_base_capacity=s.on_demand_percentage_above_base,
                on_demand_allocation_strategy=s.on_demand_allocation_strategy,
                spot_allocation_strategy=s.spot_allocation_strategy,
                spot_max_price=s.spot_max_price,
            ),
            launch_template=AutoscalingGroup.MixedInstancesPolicyLaunchTemplateProperty(
                launch_template_specification=AutoscalingGroup.MixedInstancesPolicyLaunchTemplateLaunchTemplateSpecificationProperty(launch_template_id=self.launch_template.id, version="$Latest"),
                override=overrides,
            ),
        )

    def _create_group(self) -> None:
        from cdktn_aws.auto_scaling import AwsGroup as AutoscalingGroup

        s = self.settings
        hooks = []
        if s.create_lifecycle_hook:
            hooks.append(AutoscalingGroup.InitialLifecycleHookProperty(
                name=DRAIN_HOOK_NAME,
                lifecycle_transition=TERMINATING_TRANSITION,
                heartbeat_timeout=s.lifecycle_hook_heartbeat_seconds,
                default_result=s.lifecycle_hook_default_result,
            ))
        self.group = AutoscalingGroup(
            self, "group",
            name=self.name,
            min_size=s.min_size,
            max_size=s.max_size,
            desired_capacity=s.desired_capacity if s.desired_capacity is not None else s.min_size,
            vpc_zone_identifier=self.subnet_ids,
            capacity_rebalance=s.capacity_rebalance,
            health_check_type="EC2",
            health_check_grace_period=s.health_check_grace_period,
            protect_from_scale_in=s.protect_from_scale_in,
            mixed_instances_policy=None if s.warm_pool else self._mixed_instances_policy(),
            launch_template=self._warm_pool_launch_template(),
            warm_pool=self._warm_pool(),
            initial_lifecycle_hook=hooks or None,
            instance_refresh=AutoscalingGroup.InstanceRefreshProperty(
                strategy="Rolling",
                preferences=AutoscalingGroup.PreferencesProperty(
                    min_healthy_percentage=s.instance_refresh_min_healthy_percentage),
            ),
            termination_policies=["OldestLaunchTemplate", "AllocationStrategy", "Default"],
            tag=[AutoscalingGroup.TagProperty(key=k, value=v, propagate_at_launch=True) for k, v in self.tags.items()],
            wait_for_capacity_timeout="0",
            lifecycle=TerraformResourceLifecycle(ignore_changes=["desired_capacity"]),
        )
        if s.instance_requirements is not None:
            # Attribute-based selection: written as raw Terraform (snake_case) to keep one source of truth
            # for the requirement fields in InstanceRequirements.to_terraform().
            self.group.add_override(
                "mixed_instances_policy.launch_template.override.0.instance_requirements",
                s.instance_requirements.to_terraform(),
            )

    def _warm_pool_launch_template(self):
        if self.settings.warm_pool is None:
            return None
        from cdktn_aws.auto_scaling import AwsGroup as AutoscalingGroup

        return AutoscalingGroup.LaunchTemplateProperty(id=self.launch_template.id, version="$Latest")

    def _warm_pool(self):
        wp = self.settings.warm_pool
        if wp is None:
            return None
        from cdktn_aws.auto_scaling import AwsGroup as AutoscalingGroup

        return AutoscalingGroup.WarmPoolProperty(
            pool_state=wp.pool_state,
            min_size=wp.min_size,
            max_group_prepared_capacity=wp.max_group_prepared_capacity,
            instance_reuse_policy=AutoscalingGroup.InstanceReusePolicyProperty(reuse_on_scale_in=wp.reuse_on_scale_in),
        )

    @property
    def group_name(self) -> str:
        return self.group.name

    @property
    def group_arn(self) -> str:
        return self.group.arn
