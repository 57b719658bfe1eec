"""Settings of the EKS GPU constructs, as frozen dataclasses with their validation.

Kept apart from the constructs (no cdktn import) so the manifest builders and config checks use them
without building a stack; ``modules/eks_cluster.py`` and ``modules/eks_node_groups.py`` build the resources.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Mapping, Optional

from spotkit.constructs.checks import require_at_least
from spotkit.constructs.gpu import GPU_FAMILIES, is_gpu_instance_type
from spotkit.errors import ValidationError
from spotkit.k8s.manifests import (
    GPU_ROLE,
    LIFECYCLE_LABEL,
    ROLE_LABEL,
    SPOT_TAINT,
    SYSTEM_ROLE,
    SYSTEM_TAINT,
    Taint,
)

CAPACITY_TYPES = ("SPOT", "ON_DEMAND")
LOG_TYPES = ("api", "audit", "authenticator", "controllerManager", "scheduler")
EKS_TAINT_EFFECTS = {"NoSchedule": "NO_SCHEDULE", "NoExecute": "NO_EXECUTE", "PreferNoSchedule": "PREFER_NO_SCHEDULE"}
GPU_AMI_TYPE = "AL2023_x86_64_NVIDIA"
STANDARD_AMI_TYPE = "AL2023_x86_64_STANDARD"
NODE_PROVISIONING = ("managed", "karpenter", "auto_mode")
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$")
_VERSION = re.compile(r"^1\.[0-9]{2}$")


@dataclass(frozen=True)
class EksClusterSettings:
    """The control plane.

    - ``version``: Kubernetes version, ``1.NN``. Default 1.31.
    - ``log_types``: control-plane logs sent to CloudWatch. Default all five
      (api, audit, authenticator, controllerManager, scheduler).
    - ``log_retention_days``: retention of the ``/aws/eks/<name>/cluster`` log group. Default 30.
    - ``endpoint_public_access`` / ``public_access_cidrs``: the API endpoint; the private endpoint is
      always on. Default: private only (kubectl and Terraform's kubernetes provider from inside the VPC,
      a VPN or a bastion). Public needs explicit ``public_access_cidrs`` (an error without them);
      ``0.0.0.0/0`` is accepted only when written out, with a warning.
    - ``kms_key_arn``: key that envelope-encrypts Kubernetes secrets. Default: create one with rotation.
    - ``admin_principal_arns``: IAM roles/users given cluster-admin through access entries. Default none
      (the identity that creates the cluster is admin).
    """

    version: str = "1.31"
    log_types: tuple[str, ...] = LOG_TYPES
    log_retention_days: int = 30
    endpoint_public_access: bool = False
    public_access_cidrs: tuple[str, ...] = ()
    kms_key_arn: Optional[str] = None
    admin_principal_arns: tuple[str, ...] = ()


def validate_cluster(name: str, s: EksClusterSettings) -> None:
    where = f"EKS cluster {name!r}"
    if not _VERSION.match(s.version):
        raise ValidationError(f"{where}: cluster.version {s.version!r} is not a Kubernetes version: use 1.NN (e.g. 1.31)")
    bad = sorted(set(s.log_types) - set(LOG_TYPES))
    if bad:
        raise ValidationError(f"{where}: cluster.log_types has {', '.join(bad)}: use {', '.join(LOG_TYPES)}")
    require_at_least(where, "cluster.log_retention_days", s.log_retention_days, 1)
    if s.endpoint_public_access and not s.public_access_cidrs:
        raise ValidationError(f"{where}: cluster.public_access_cidrs is empty while endpoint_public_access is on: "
                              "give the CIDRs allowed to reach the API, or turn endpoint_public_access off")
    for cidr in s.public_access_cidrs:
        try:
            ipaddress.ip_network(cidr, strict=True)
        except ValueError:
            raise ValidationError(f"{where}: cluster.public_access_cidrs has {cidr!r}, which is not a CIDR block "
                                  "(e.g. 203.0.113.0/24)") from None


@dataclass(frozen=True)
class NodeGroupSettings:
    """One EKS managed node group.

    - ``name``: 2-32 lowercase letters, digits, hyphens.
    - ``capacity_type``: ``SPOT`` (default) or ``ON_DEMAND``.
    - ``instance_types``: for a spot GPU group, 2 or more NVIDIA GPU types (3+ recommended). Default
      g5.xlarge, g6.xlarge, g6e.xlarge, g4dn.xlarge: four spot pools of 1-GPU nodes.
    - ``gpu``: the group runs GPU work: every type must be a GPU type and the NVIDIA AMI is used. Default on.
    - ``min_size`` / ``max_size`` / ``desired_size``: ``desired_size`` applies at creation only. Default 0-4.
    - ``taints``: default the spot taint ``spot=true:NoSchedule``; a spot group must keep it.
    - ``labels``: extra node labels; ``spotkit.io/lifecycle`` (spot / on-demand) and
      ``spotkit.io/node-role`` (gpu / system) are always set.
    - ``disk_size_gib``: root volume. Default 200 (images of training frameworks are large).
    - ``max_unavailable_percentage``: nodes replaced at once during an update. Default 33.
    """

    name: str = "gpu-spot"
    capacity_type: str = "SPOT"
    instance_types: tuple[str, ...] = ("g5.xlarge", "g6.xlarge", "g6e.xlarge", "g4dn.xlarge")
    gpu: bool = True
    min_size: int = 0
    max_size: int = 4
    desired_size: Optional[int] = None
    taints: tuple[Taint, ...] = (SPOT_TAINT,)
    labels: Mapping[str, str] = field(default_factory=dict)
    disk_size_gib: int = 200
    max_unavailable_percentage: int = 33

    @property
    def is_spot(self) -> bool:
        return self.capacity_type == "SPOT"

    @property
    def lifecycle(self) -> str:
        return "spot" if self.is_spot else "on-demand"

    @property
    def ami_type(self) -> str:
        return GPU_AMI_TYPE if self.gpu else STANDARD_AMI_TYPE

    def node_labels(self, role: str) -> dict[str, str]:
        return {**dict(self.labels), LIFECYCLE_LABEL: self.lifecycle, ROLE_LABEL: role}


SYSTEM_GROUP_DEFAULT = NodeGroupSettings(
    name="system", capacity_type="ON_DEMAND", instance_types=("m6i.large", "m6a.large", "m5.large"), gpu=False,
    min_size=2, max_size=3, taints=(SYSTEM_TAINT,), disk_size_gib=50,
)
ON_DEMAND_GPU_GROUP_DEFAULT = NodeGroupSettings(
    name="gpu-on-demand", capacity_type="ON_DEMAND", instance_types=("g5.xlarge", "g6.xlarge"), gpu=True,
    min_size=1, max_size=1, taints=(Taint("nvidia.com/gpu", "true", "NoSchedule"),),
)


def spot_gpu_one_type_message(name: str, instance_types: tuple[str, ...]) -> str:
    return (
        f"node group {name!r}: a spot GPU group needs at least 2 instance types (got {len(set(instance_types))}: "
        f"{', '.join(instance_types) or 'none'}); losing that one spot pool would take every node: list 3 or more "
        "GPU types (e.g. g5.xlarge, g6.xlarge, g6e.xlarge)"
    )


def validate_node_group(s: NodeGroupSettings, role: str = GPU_ROLE) -> None:
    where = f"node group {s.name!r}"
    if not _NAME.match(s.name):
        raise ValidationError(f"{where}: name must be 2-32 lowercase letters, digits or hyphens, starting with a letter")
    if s.capacity_type not in CAPACITY_TYPES:
        raise ValidationError(f"{where}: capacity_type {s.capacity_type!r} is not an EKS capacity type: use SPOT or ON_DEMAND")
    if s.min_size < 0 or s.min_size > s.max_size or s.max_size < 1:
        raise ValidationError(f"{where}: sizes must satisfy 0 <= min_size <= max_size and max_size >= 1 "
                              f"(got min_size={s.min_size}, max_size={s.max_size})")
    if s.desired_size is not None and not s.min_size <= s.desired_size <= s.max_size:
        raise ValidationError(f"{where}: desired_size ({s.desired_size}) must lie between min_size ({s.min_size}) "
                              f"and max_size ({s.max_size})")
    if not s.instance_types:
        raise ValidationError(f"{where}: instance_types is empty: list the instance types of the group")
    if s.gpu:
        bad = [t for t in s.instance_types if not is_gpu_instance_type(t)]
        if bad:
            raise ValidationError(
                f"{where}: {', '.join(bad)} {'is not a GPU instance type' if len(bad) == 1 else 'are not GPU instance types'}"
                f": a GPU node group takes NVIDIA GPU families only ({', '.join(GPU_FAMILIES)})"
            )
        if s.is_spot and len(set(s.instance_types)) < 2:
            raise ValidationError(spot_gpu_one_type_message(s.name, s.instance_types))
    for t in s.taints:
        if t.effect not in EKS_TAINT_EFFECTS:
            raise ValidationError(f"{where}: taint {t} has effect {t.effect!r}: use {', '.join(EKS_TAINT_EFFECTS)}")
    if s.is_spot and SPOT_TAINT not in s.taints:
        raise ValidationError(f"{where}: a spot group must carry the taint {SPOT_TAINT} so only pods that tolerate "
                              "interruption land on it: add it to taints")
    if role == SYSTEM_ROLE:
        if s.is_spot:
            raise ValidationError(f"{where}: the system group must be ON_DEMAND: cluster add-ons (CoreDNS, Karpenter) "
                                  "must not be reclaimed with the spot nodes")
        if SYSTEM_TAINT not in s.taints:
            raise ValidationError(f"{where}: the system group must carry the taint {SYSTEM_TAINT} so workloads stay off it")
    if not 1 <= s.max_unavailable_percentage <= 100:
        raise ValidationError(f"{where}: max_unavailable_percentage must be between 1 and 100 "
                              f"(got {s.max_unavailable_percentage})")
    if s.disk_size_gib < 20:
        raise ValidationError(f"{where}: disk_size_gib must be at least 20 (got {s.disk_size_gib})")
