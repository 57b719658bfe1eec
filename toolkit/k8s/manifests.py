"""Builders for the Kubernetes manifests a spot GPU cluster needs, as plain dicts.

- Karpenter / EKS Auto Mode ``NodePool`` and node class (``EC2NodeClass`` for self-installed
  Karpenter, ``NodeClass`` for Auto Mode) per GPU pool: capacity type, GPU families or GPU names,
  the spot taint, disruption budgets, consolidation and a node termination grace period;
- the EFS ``StorageClass``, a ``PersistentVolume`` on the storage module's access point and the
  checkpoint ``PersistentVolumeClaim``;
- an example training ``Job``: tolerates the spot taint, prefers spot nodes, never lands on
  ``CriticalAddonsOnly`` system nodes, checkpoints to the PVC in a ``preStop`` hook within the spot
  notice, and resumes from the newest checkpoint when it starts again.

Every builder takes frozen dataclasses and returns dicts that ``render`` writes as YAML. Values that
Terraform knows only after apply (the EFS id) are passed in: a literal id, or a Terraform reference
when the stack deploys the manifests itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from spotkit.runtime.notice import SPOT_NOTICE_SECONDS, TAG_CLUSTER
# Time the node needs between the notice and the pod's SIGTERM (the drain starts, the kubelet reacts)
# plus the final write of the checkpoint to EFS; what is left is the pod's grace period.
GRACE_MARGIN_SECONDS = 30
MAX_GRACE_SECONDS = SPOT_NOTICE_SECONDS - GRACE_MARGIN_SECONDS

LIFECYCLE_LABEL = "spotkit.io/lifecycle"
ROLE_LABEL = "spotkit.io/node-role"
SYSTEM_ROLE = "system"
GPU_ROLE = "gpu"
# IMDS response hop limit of every EKS node spotkit makes (Karpenter's EC2NodeClass here, the managed node
# groups' launch template in modules/eks_node_groups.py): 1 keeps pods off the node role's credentials
# (a pod's network namespace is one hop further than the node). Pods get AWS access from Pod Identity/IRSA.
NODE_METADATA_HOP_LIMIT = 1
KARPENTER_CAPACITY_TYPE = "karpenter.sh/capacity-type"
EFS_PROVISIONER = "efs.csi.aws.com"


@dataclass(frozen=True)
class Taint:
    """A node taint. ``effect`` uses the Kubernetes spelling (NoSchedule, NoExecute, PreferNoSchedule)."""

    key: str = "spot"
    value: str = "true"
    effect: str = "NoSchedule"

    def to_k8s(self) -> dict:
        return {"key": self.key, "value": self.value, "effect": self.effect}

    def toleration(self) -> dict:
        return {"key": self.key, "operator": "Equal", "value": self.value, "effect": self.effect}

    def __str__(self) -> str:
        return f"{self.key}={self.value}:{self.effect}"


SPOT_TAINT = Taint("spot", "true", "NoSchedule")
SYSTEM_TAINT = Taint("CriticalAddonsOnly", "true", "NoSchedule")
GPU_TAINT = Taint("nvidia.com/gpu", "true", "NoSchedule")


@dataclass(frozen=True)
class NodePoolSpec:
    """One Karpenter / Auto Mode pool of GPU capacity.

    - ``capacity_type``: ``spot`` or ``on-demand``.
    - ``instance_families``: e.g. ``("g5", "g6", "g6e")`` (Karpenter ``instance-family`` requirement).
      Auto Mode uses ``gpu_names`` instead when given (``eks.amazonaws.com/instance-gpu-name``).
    - ``taints``: default the spot taint for spot pools.
    - ``gpu_limit``: most GPUs the pool may hold (``limits.nvidia.com/gpu``).
    - ``consolidation_policy`` / ``consolidate_after``: ``WhenEmpty`` by default, so a running
      training pod is never moved to save money; ``WhenEmptyOrUnderutilized`` is allowed.
    - ``disruption_budget_nodes``: at most this many (or percent) nodes disrupted at once.
    - ``termination_grace_period``: longest a node drains before it is force-terminated.
    - ``expire_after``: node lifetime (``Never`` to keep them).
    - ``weight``: higher weight is tried first (spot pools above on-demand).
    """

    name: str = "gpu-spot"
    capacity_type: str = "spot"
    instance_families: tuple[str, ...] = ("g5", "g6", "g6e")
    gpu_names: tuple[str, ...] = ()
    taints: tuple[Taint, ...] = (SPOT_TAINT,)
    gpu_limit: int = 16
    consolidation_policy: str = "WhenEmpty"
    consolidate_after: str = "5m"
    disruption_budget_nodes: str = "10%"
    termination_grace_period: str = "2m"
    expire_after: str = "720h"
    weight: int = 50


@dataclass(frozen=True)
class CheckpointStorageSpec:
    """The EFS StorageClass, the PersistentVolume on the stack's access point, and the checkpoint claim.

    Static provisioning on purpose: the storage module's access point (fixed POSIX identity, its root
    directory) is the one the node roles are granted to mount (IAM + TLS, the file system policy refuses
    anything else); dynamic ``efs-ap`` provisioning would create access points no grant covers.
    ``access_point_id`` empty means "mount the file system root" (bring-your-own file systems).
    """

    file_system_id: str = "fs-REPLACE-ME"
    access_point_id: str = "fsap-REPLACE-ME"
    storage_class_name: str = "efs-checkpoints"
    pv_name: str = "spotkit-checkpoints"
    pvc_name: str = "checkpoints"
    namespace: str = "default"
    size: str = "100Gi"

    @property
    def volume_handle(self) -> str:
        return f"{self.file_system_id}::{self.access_point_id}" if self.access_point_id else self.file_system_id


@dataclass(frozen=True)
class TrainingJobSpec:
    """The example training Job.

    - ``train_command``: what the container runs after the resume lookup; ``$RESUME_FROM`` holds the
      newest checkpoint (empty on a first start).
    - ``checkpoint_command``: what the ``preStop`` hook runs; it must write under ``checkpoint_dir``.
      The default signals the trainer with SIGUSR1 (the entrypoint execs it, so it is PID 1),
      then waits up to 80 s for the ``.saved`` marker the trainer writes once the checkpoint is complete.
    - ``checkpoint_dir``: where checkpoints go; must lie under ``mount_path`` (the PVC).
    - ``termination_grace_period_seconds``: at most the spot notice minus the margin (90 s).
    - ``target``: ``spot`` (prefer spot, tolerate its taint) or ``any``.
    """

    name: str = "train-example"
    namespace: str = "default"
    image: str = "nvcr.io/nvidia/pytorch:24.08-py3"
    gpus: int = 1
    mount_path: str = "/checkpoints"
    checkpoint_dir: str = "/checkpoints/train-example"
    train_command: str = 'python /workspace/train.py --checkpoint-dir "$CHECKPOINT_DIR" ${RESUME_FROM:+--resume "$RESUME_FROM"}'
    checkpoint_command: str = (
        'rm -f "$CHECKPOINT_DIR/.saved"; kill -USR1 1; '
        'for i in $(seq 1 80); do [ -f "$CHECKPOINT_DIR/.saved" ] && exit 0; sleep 1; done; exit 1'
    )
    termination_grace_period_seconds: int = MAX_GRACE_SECONDS
    target: str = "spot"
    backoff_limit: int = 20
    tolerate_spot: bool = True
    extra_tolerations: tuple[Taint, ...] = (GPU_TAINT,)


@dataclass(frozen=True)
class ManifestSet:
    """What ``render`` writes: name -> manifest dict, in apply order."""

    manifests: Mapping[str, dict] = field(default_factory=dict)

    def names(self) -> list[str]:
        return list(self.manifests)


# --- NodePools -------------------------------------------------------------------------------


def node_pool(pool: NodePoolSpec, *, mode: str, node_class_name: str) -> dict:
    """A ``karpenter.sh/v1`` NodePool. ``mode`` is ``karpenter`` (EC2NodeClass) or ``auto_mode`` (NodeClass)."""
    if mode == "auto_mode":
        class_ref = {"group": "eks.amazonaws.com", "kind": "NodeClass", "name": node_class_name}
        family_key, gpu_key = "eks.amazonaws.com/instance-family", "eks.amazonaws.com/instance-gpu-name"
    else:
        class_ref = {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": node_class_name}
        family_key, gpu_key = "karpenter.k8s.aws/instance-family", "karpenter.k8s.aws/instance-gpu-name"
    requirements = [
        {"key": KARPENTER_CAPACITY_TYPE, "operator": "In", "values": [pool.capacity_type]},
        {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]},
    ]
    if pool.gpu_names:
        requirements.append({"key": gpu_key, "operator": "In", "values": list(pool.gpu_names)})
    if pool.instance_families:
        requirements.append({"key": family_key, "operator": "In", "values": list(pool.instance_families)})
    lifecycle = "spot" if pool.capacity_type == "spot" else "on-demand"
    return {
        "apiVersion": "karpenter.sh/v1",
        "kind": "NodePool",
        "metadata": {"name": pool.name},
        "spec": {
            "weight": pool.weight,
            "template": {
                "metadata": {"labels": {LIFECYCLE_LABEL: lifecycle, ROLE_LABEL: GPU_ROLE}},
                "spec": {
                    "nodeClassRef": class_ref,
                    "requirements": requirements,
                    "taints": [t.to_k8s() for t in pool.taints],
                    "terminationGracePeriod": pool.termination_grace_period,
                    "expireAfter": pool.expire_after,
                },
            },
            "disruption": {
                "consolidationPolicy": pool.consolidation_policy,
                "consolidateAfter": pool.consolidate_after,
                "budgets": [{"nodes": pool.disruption_budget_nodes}],
            },
            "limits": {"nvidia.com/gpu": str(pool.gpu_limit)},
        },
    }


def ec2_node_class(*, name: str, cluster_name: str, node_role_name: str, volume_size_gib: int = 200) -> dict:
    """A ``karpenter.k8s.aws/v1`` EC2NodeClass: AL2023 GPU AMIs, subnets and SGs found by the discovery tag."""
    selector = [{"tags": {"karpenter.sh/discovery": cluster_name}}]
    return {
        "apiVersion": "karpenter.k8s.aws/v1",
        "kind": "EC2NodeClass",
        "metadata": {"name": name},
        "spec": {
            "role": node_role_name,
            "amiSelectorTerms": [{"alias": "al2023@latest"}],
            "subnetSelectorTerms": selector,
            "securityGroupSelectorTerms": selector,
            "metadataOptions": {"httpEndpoint": "enabled", "httpTokens": "required", "httpPutResponseHopLimit": NODE_METADATA_HOP_LIMIT},
            "blockDeviceMappings": [{
                "deviceName": "/dev/xvda",
                "ebs": {"volumeSize": f"{volume_size_gib}Gi", "volumeType": "gp3", "encrypted": True,
                        "deleteOnTermination": True},
            }],
            "tags": {TAG_CLUSTER: cluster_name},
        },
    }


def auto_mode_node_class(*, name: str, cluster_name: str, node_role_name: str, volume_size_gib: int = 200) -> dict:
    """An ``eks.amazonaws.com/v1`` NodeClass for EKS Auto Mode (AWS manages AMI and interruption handling)."""
    selector = [{"tags": {"karpenter.sh/discovery": cluster_name}}]
    return {
        "apiVersion": "eks.amazonaws.com/v1",
        "kind": "NodeClass",
        "metadata": {"name": name},
        "spec": {
            "role": node_role_name,
            "subnetSelectorTerms": selector,
            "securityGroupSelectorTerms": selector,
            "ephemeralStorage": {"size": f"{volume_size_gib}Gi"},
            "tags": {TAG_CLUSTER: cluster_name},
        },
    }


# --- storage ---------------------------------------------------------------------------------


def storage_class(spec: CheckpointStorageSpec) -> dict:
    """The EFS CSI StorageClass the checkpoint volume and claim bind through."""
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": spec.storage_class_name},
        "provisioner": EFS_PROVISIONER,
        # Retain: deleting the claim never deletes the checkpoints.
        "reclaimPolicy": "Retain",
        "volumeBindingMode": "Immediate",
    }


def persistent_volume(spec: CheckpointStorageSpec) -> dict:
    """The checkpoint volume: the EFS file system through the access point, mounted with TLS (+ IAM)."""
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": spec.pv_name},
        "spec": {
            "capacity": {"storage": spec.size},
            "volumeMode": "Filesystem",
            "accessModes": ["ReadWriteMany"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": spec.storage_class_name,
            # iam: the node role's grant (scoped to the access point) is what lets the node mount.
            "mountOptions": ["tls", "iam"] if spec.access_point_id else ["tls"],
            "csi": {"driver": EFS_PROVISIONER, "volumeHandle": spec.volume_handle},
        },
    }


def checkpoint_claim(spec: CheckpointStorageSpec) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": spec.pvc_name, "namespace": spec.namespace},
        "spec": {
            "accessModes": ["ReadWriteMany"],
            "storageClassName": spec.storage_class_name,
            "volumeName": spec.pv_name,
            "resources": {"requests": {"storage": spec.size}},
        },
    }


# --- the training Job ------------------------------------------------------------------------


def resume_script(job: TrainingJobSpec) -> str:
    """The container's entrypoint: find the newest checkpoint under the PVC, then exec the trainer."""
    return "\n".join([
        "set -eu",
        'mkdir -p "$CHECKPOINT_DIR"',
        # Newest first by modification time; the .saved marker and partial writes (*.tmp) are skipped.
        'RESUME_FROM=$(ls -1t "$CHECKPOINT_DIR" 2>/dev/null | grep -v -e "^\\.saved$" -e "\\.tmp$" | head -n 1 || true)',
        'if [ -n "$RESUME_FROM" ]; then RESUME_FROM="$CHECKPOINT_DIR/$RESUME_FROM"; '
        'echo "spotkit: resuming from $RESUME_FROM"; else echo "spotkit: no checkpoint, starting fresh"; fi',
        "export RESUME_FROM",
        f"exec {job.train_command}",
    ])


def training_job(job: TrainingJobSpec, storage: CheckpointStorageSpec, *, spot_taint: Taint = SPOT_TAINT) -> dict:
    tolerations = []
    if job.tolerate_spot:
        tolerations.append(spot_taint.toleration())
    tolerations += [t.toleration() for t in job.extra_tolerations]
    # Never on system nodes: they carry CriticalAddonsOnly and the system role label.
    required = {"nodeSelectorTerms": [{"matchExpressions": [
        {"key": ROLE_LABEL, "operator": "NotIn", "values": [SYSTEM_ROLE]},
    ]}]}
    affinity: dict = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": required}}
    if job.target == "spot":
        affinity["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"] = [
            {"weight": 100, "preference": {"matchExpressions": [
                {"key": LIFECYCLE_LABEL, "operator": "In", "values": ["spot"]}]}},
        ]
    container = {
        "name": "trainer",
        "image": job.image,
        "command": ["/bin/sh", "-c", resume_script(job)],
        "env": [{"name": "CHECKPOINT_DIR", "value": job.checkpoint_dir}],
        "resources": {"limits": {"nvidia.com/gpu": job.gpus}},
        "volumeMounts": [{"name": "checkpoints", "mountPath": job.mount_path}],
        "lifecycle": {"preStop": {"exec": {"command": ["/bin/sh", "-c", job.checkpoint_command]}}},
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": job.name, "namespace": job.namespace, "labels": {"app.kubernetes.io/part-of": "spotkit"}},
        "spec": {
            "backoffLimit": job.backoff_limit,
            # A reclaimed node is a disruption, not a bug: it does not count against backoffLimit.
            "podFailurePolicy": {"rules": [
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
            ]},
            "template": {
                "metadata": {"labels": {"app.kubernetes.io/name": job.name},
                             # Karpenter must not voluntarily move a running trainer (consolidation).
                             "annotations": {"karpenter.sh/do-not-disrupt": "true"}},
                "spec": {
                    "restartPolicy": "Never",
                    "terminationGracePeriodSeconds": job.termination_grace_period_seconds,
                    "tolerations": tolerations,
                    "affinity": affinity,
                    "containers": [container],
                    "volumes": [{"name": "checkpoints",
                                 "persistentVolumeClaim": {"claimName": storage.pvc_name}}],
                },
            },
        },
    }


NVIDIA_DEVICE_PLUGIN_IMAGE = "nvcr.io/nvidia/k8s-device-plugin:v0.17.0"


def nvidia_device_plugin() -> dict:
    """The NVIDIA device plugin DaemonSet on GPU nodes (EKS Auto Mode ships its own; managed node groups
    and Karpenter nodes with the AL2023 NVIDIA AMI have the driver but not the plugin)."""
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "nvidia-device-plugin", "namespace": "kube-system"},
        "spec": {
            "selector": {"matchLabels": {"name": "nvidia-device-plugin"}},
            "updateStrategy": {"type": "RollingUpdate"},
            "template": {
                "metadata": {"labels": {"name": "nvidia-device-plugin"}},
                "spec": {
                    "priorityClassName": "system-node-critical",
                    "nodeSelector": {ROLE_LABEL: GPU_ROLE},
                    # GPU nodes carry the spot or GPU taint: the plugin must run on every one of them.
                    "tolerations": [{"operator": "Exists"}],
                    "containers": [{
                        "name": "nvidia-device-plugin",
                        "image": NVIDIA_DEVICE_PLUGIN_IMAGE,
                        "env": [{"name": "FAIL_ON_INIT_ERROR", "value": "false"}],
                        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                        "volumeMounts": [{"name": "device-plugin", "mountPath": "/var/lib/kubelet/device-plugins"}],
                    }],
                    "volumes": [{"name": "device-plugin", "hostPath": {"path": "/var/lib/kubelet/device-plugins"}}],
                },
            },
        },
    }
