"""Config of the ``eks_gpu`` stack, and the Kubernetes manifests it implies.

No construct is built here: ``spotkit k8s render`` builds the manifests from this config without
synthesizing the stack (about 2 s, nearly all of it importing cdktn through the shared settings classes
``StackConfig``, ``NetworkSettings`` and ``EfsCheckpointSettings``), and ``stacks/eks_gpu.py`` builds the
Terraform side from the same config.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from spotkit.constructs.eks_settings import (
    NODE_PROVISIONING,
    ON_DEMAND_GPU_GROUP_DEFAULT,
    SYSTEM_GROUP_DEFAULT,
    EksClusterSettings,
    NodeGroupSettings,
    validate_cluster,
    validate_node_group,
)
from spotkit.constructs.efs_checkpoints import EfsCheckpointSettings
from spotkit.constructs.network import NetworkSettings, validate_network
from spotkit.stacks.base import StackConfig
from spotkit.errors import ValidationError
from spotkit.k8s import manifests as m
from spotkit.k8s.validate import check_job, check_job_fits_pool, check_job_manifest, check_node_pool, check_storage

DEFAULT_SPOT_POOL = m.NodePoolSpec()
DEFAULT_ON_DEMAND_POOL = m.NodePoolSpec(
    name="gpu-on-demand", capacity_type="on-demand", instance_families=("g5", "g6"), taints=(m.GPU_TAINT,),
    gpu_limit=4, weight=10, termination_grace_period="10m",
)
PLACEHOLDER_FILE_SYSTEM_ID = "fs-REPLACE-ME"
PLACEHOLDER_ACCESS_POINT_ID = "fsap-REPLACE-ME"


@dataclass(frozen=True)
class KarpenterSettings:
    """GPU capacity through Karpenter or EKS Auto Mode (``node_provisioning`` = karpenter / auto_mode).

    - ``pools``: NodePools. Default: a spot pool (g5, g6, g6e; weight 50) above an on-demand floor pool
      (g5, g6; weight 10, at most 4 GPUs), so Karpenter tries spot first and falls back to on-demand.
    - ``node_volume_size_gib``: root/ephemeral storage of Karpenter nodes. Default 200.
    - ``interruption_queue``: (karpenter only) the SQS queue and EventBridge rules Karpenter reads to
      drain a node on a spot interruption warning or rebalance recommendation. Default on. Auto Mode
      handles interruptions itself.
    """

    pools: tuple[m.NodePoolSpec, ...] = (DEFAULT_SPOT_POOL, DEFAULT_ON_DEMAND_POOL)
    node_volume_size_gib: int = 200
    interruption_queue: bool = True


@dataclass(frozen=True)
class CheckpointSettings:
    """Where checkpoints live: EFS through the EFS CSI driver.

    - ``create_efs``: create the file system (storage module). Default on.
    - ``file_system_id`` / ``access_point_id``: bring your own file system (and access point) instead;
      then ``create_efs`` is ignored. Without an access point the volume mounts the file system root.
    - ``efs``: settings of the created file system (``EfsCheckpointSettings``: throughput, IA, backup,
      POSIX identity, root directory).
    - ``storage_class_name`` / ``pvc_name`` / ``namespace`` / ``size``: the StorageClass and claim.
    """

    create_efs: bool = True
    file_system_id: Optional[str] = None
    access_point_id: Optional[str] = None
    efs: EfsCheckpointSettings = field(default_factory=EfsCheckpointSettings)
    storage_class_name: str = "efs-checkpoints"
    pvc_name: str = "checkpoints"
    namespace: str = "default"
    size: str = "100Gi"


@dataclass(frozen=True)
class EksGpuConfig(StackConfig):
    """EKS with GPU spot pools. Defaults synthesize with no config.

    - ``network``: created VPC (2 AZs) or your own ``vpc_id``/``subnet_ids``.
    - ``cluster``: version, logs, secrets encryption, endpoint access (``EksClusterSettings``).
    - ``system_group``: on-demand, tainted ``CriticalAddonsOnly=true:NoSchedule``; 2-3 m6i/m6a/m5.large.
    - ``spot_gpu_groups``: managed SPOT GPU node groups (``node_provisioning=managed``). Default one
      group of g5/g6/g6e/g4dn.xlarge, 0-4 nodes, tainted ``spot=true:NoSchedule``.
    - ``on_demand_gpu_group`` + ``on_demand_gpu``: an on-demand GPU floor. Default off.
    - ``node_provisioning``: managed (node groups, default), karpenter (NodePools + EC2NodeClass +
      interruption queue; install the Karpenter chart yourself), auto_mode (EKS Auto Mode NodePools).
    - ``karpenter``: pools and the interruption queue for karpenter / auto_mode.
    - ``checkpoints``: EFS for checkpoints, its StorageClass and claim.
    - ``job``: the example training Job.
    - ``deploy_manifests``: also deploy the manifests through Terraform's kubernetes provider.
      Default off: the default stack needs only hashicorp/aws (offline mirrors carry only that).
    """

    name: str = "spotkit-eks"
    network: NetworkSettings = field(default_factory=NetworkSettings)
    cluster: EksClusterSettings = field(default_factory=EksClusterSettings)
    system_group: NodeGroupSettings = SYSTEM_GROUP_DEFAULT
    spot_gpu_groups: tuple[NodeGroupSettings, ...] = (NodeGroupSettings(),)
    on_demand_gpu_group: bool = False
    on_demand_gpu: NodeGroupSettings = ON_DEMAND_GPU_GROUP_DEFAULT
    node_provisioning: str = "managed"
    karpenter: KarpenterSettings = field(default_factory=KarpenterSettings)
    checkpoints: CheckpointSettings = field(default_factory=CheckpointSettings)
    job: m.TrainingJobSpec = field(default_factory=m.TrainingJobSpec)
    deploy_manifests: bool = False

    @property
    def uses_node_pools(self) -> bool:
        return self.node_provisioning in ("karpenter", "auto_mode")

    @property
    def karpenter_node_role_name(self) -> str:
        return f"{self.name}-{'auto' if self.node_provisioning == 'auto_mode' else 'karpenter'}-node"[:64]


def validate_config(config: EksGpuConfig) -> None:
    """Every rule of the stack, before any resource is created."""
    validate_network(config.network)
    if config.checkpoints.access_point_id and not config.checkpoints.file_system_id:
        raise ValidationError("checkpoints.access_point_id needs checkpoints.file_system_id: give both to bring your "
                              "own EFS, or neither to create one")
    validate_cluster(config.name, config.cluster)
    if config.node_provisioning not in NODE_PROVISIONING:
        raise ValidationError(f"node_provisioning {config.node_provisioning!r}: use one of {', '.join(NODE_PROVISIONING)}")
    validate_node_group(config.system_group, role=m.SYSTEM_ROLE)
    if config.node_provisioning == "managed":
        if not config.spot_gpu_groups:
            raise ValidationError("spot_gpu_groups is empty with node_provisioning=managed: add a spot GPU group, "
                                  "or use node_provisioning=karpenter or auto_mode")
        for group in config.spot_gpu_groups:
            validate_node_group(group)
            if not group.is_spot:
                raise ValidationError(f"spot_gpu_groups: node group {group.name!r} has capacity_type "
                                      f"{group.capacity_type}: put on-demand GPU capacity in on_demand_gpu instead")
            if not group.gpu:
                raise ValidationError(f"spot_gpu_groups: node group {group.name!r} has gpu off: spot GPU groups must be GPU groups")
    else:
        if not config.karpenter.pools:
            raise ValidationError(f"karpenter.pools is empty with node_provisioning={config.node_provisioning}: "
                                  "add a spot GPU pool")
        for pool in config.karpenter.pools:
            check_node_pool(pool)
        if not any(p.capacity_type == "spot" for p in config.karpenter.pools):
            raise ValidationError("karpenter.pools has no spot pool: add one with capacity_type=spot")
    if config.on_demand_gpu_group:
        validate_node_group(config.on_demand_gpu)
        if config.on_demand_gpu.is_spot:
            raise ValidationError(f"on_demand_gpu: node group {config.on_demand_gpu.name!r} must be ON_DEMAND (it is the floor)")
    names = [config.system_group.name] + [g.name for g in config.spot_gpu_groups] + (
        [config.on_demand_gpu.name] if config.on_demand_gpu_group else [])
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValidationError(f"node group names must be unique: {', '.join(dupes)} is used twice")
    check_job(config.job)
    if config.job.namespace != config.checkpoints.namespace:
        raise ValidationError(
            f"job.namespace {config.job.namespace!r} differs from checkpoints.namespace "
            f"{config.checkpoints.namespace!r}: a pod can only mount a claim in its own namespace; set both to the same"
        )
    if config.uses_node_pools:
        for pool in config.karpenter.pools:
            check_job_fits_pool(config.job, pool)


def storage_spec(config: EksGpuConfig, file_system_id: Optional[str] = None,
                 access_point_id: Optional[str] = None) -> m.CheckpointStorageSpec:
    """The storage side of the manifests. Ids given here win (the stack passes Terraform references);
    then the config's bring-your-own ids; then placeholders that ``render`` reports."""
    c = config.checkpoints
    if file_system_id or c.file_system_id:
        fs = file_system_id or c.file_system_id
        ap = access_point_id or c.access_point_id or ""
    else:
        fs, ap = PLACEHOLDER_FILE_SYSTEM_ID, access_point_id or PLACEHOLDER_ACCESS_POINT_ID
    return m.CheckpointStorageSpec(
        file_system_id=fs, access_point_id=ap,
        storage_class_name=c.storage_class_name, pvc_name=c.pvc_name, namespace=c.namespace, size=c.size,
    )


def build_manifests(config: EksGpuConfig, file_system_id: Optional[str] = None,
                    access_point_id: Optional[str] = None) -> dict[str, dict]:
    """Name -> manifest, in apply order. Ids may be literal or Terraform references."""
    validate_config(config)
    storage = storage_spec(config, file_system_id, access_point_id)
    check_storage(storage)
    out: dict[str, dict] = {
        f"storageclass-{storage.storage_class_name}": m.storage_class(storage),
        f"persistentvolume-{storage.pv_name}": m.persistent_volume(storage),
        f"pvc-{storage.pvc_name}": m.checkpoint_claim(storage),
    }
    if config.node_provisioning != "auto_mode":
        out["daemonset-nvidia-device-plugin"] = m.nvidia_device_plugin()
    if config.uses_node_pools:
        class_name = "gpu"
        builder = m.auto_mode_node_class if config.node_provisioning == "auto_mode" else m.ec2_node_class
        node_class = builder(name=class_name, cluster_name=config.name, node_role_name=config.karpenter_node_role_name,
                             volume_size_gib=config.karpenter.node_volume_size_gib)
        out[f"{node_class['kind'].lower()}-{class_name}"] = node_class
        for pool in config.karpenter.pools:
            out[f"nodepool-{pool.name}"] = m.node_pool(pool, mode=config.node_provisioning, node_class_name=class_name)
    job = config.job
    job_manifest = m.training_job(job, storage)
    check_job_manifest(job_manifest)
    out[f"job-{job.name}"] = job_manifest
    return out
