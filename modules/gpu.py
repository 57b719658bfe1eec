"""GPU instance families, the GPU-optimized ECS AMI, and the checks a GPU cluster needs.

The table covers the NVIDIA families ECS GPU tasks run on (the ECS GPU-optimized AMI ships the NVIDIA
driver and container toolkit). AMD (g4ad), Inferentia/Trainium (inf2, trn1) and Graviton GPU (g5g) types
are left out on purpose: the ECS GPU AMI does not drive them, so a task asking for ``GPU`` would never
be placed there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

from spotkit.errors import ValidationError

# Public SSM parameters with the latest ECS-optimized Amazon Linux 2023 AMIs (x86_64).
ECS_AMI_PARAMETER = "/aws/service/ecs/optimized-ami/amazon-linux-2023/recommended/image_id"
ECS_GPU_AMI_PARAMETER = "/aws/service/ecs/optimized-ami/amazon-linux-2023/gpu/recommended/image_id"


@dataclass(frozen=True)
class GpuFamily:
    """One instance family: its GPU, memory per GPU, and GPUs per size (sizes the family sells)."""

    family: str
    accelerator: str
    gpu_memory_gib: int
    gpus_by_size: Mapping[str, int]


def _sizes(one: Sequence[str] = (), four: Sequence[str] = (), eight: Sequence[str] = ()) -> dict[str, int]:
    return {**{s: 1 for s in one}, **{s: 4 for s in four}, **{s: 8 for s in eight}}


_SMALL = ("xlarge", "2xlarge", "4xlarge", "8xlarge", "16xlarge")
GPU_FAMILIES: dict[str, GpuFamily] = {f.family: f for f in [
    GpuFamily("g4dn", "t4", 16, _sizes(_SMALL, ("12xlarge",), ("metal",))),
    GpuFamily("g5", "a10g", 24, _sizes(_SMALL, ("12xlarge", "24xlarge"), ("48xlarge",))),
    GpuFamily("g6", "l4", 24, _sizes(_SMALL, ("12xlarge", "24xlarge"), ("48xlarge",))),
    GpuFamily("gr6", "l4", 24, _sizes(("4xlarge", "8xlarge"))),
    GpuFamily("g6e", "l40s", 48, _sizes(_SMALL, ("12xlarge", "24xlarge"), ("48xlarge",))),
    GpuFamily("p3", "v100", 16, _sizes(("2xlarge",), ("8xlarge",), ("16xlarge",))),
    GpuFamily("p3dn", "v100", 32, _sizes((), (), ("24xlarge",))),
    GpuFamily("p4d", "a100", 40, _sizes((), (), ("24xlarge",))),
    GpuFamily("p4de", "a100", 80, _sizes((), (), ("24xlarge",))),
    GpuFamily("p5", "h100", 80, _sizes(("4xlarge",), (), ("48xlarge",))),
    GpuFamily("p5e", "h200", 141, _sizes((), (), ("48xlarge",))),
    GpuFamily("p5en", "h200", 141, _sizes((), (), ("48xlarge",))),
]}


def family_of(instance_type: str) -> str:
    return instance_type.split(".", 1)[0]


def is_gpu_instance_type(instance_type: str) -> bool:
    return family_of(instance_type) in GPU_FAMILIES


def gpus_in(instance_type: str) -> Optional[int]:
    """GPUs of a type from the table, or None for a size the table does not know."""
    fam = GPU_FAMILIES.get(family_of(instance_type))
    if fam is None or "." not in instance_type:
        return None
    return fam.gpus_by_size.get(instance_type.split(".", 1)[1])


def instance_types_for(families: Sequence[str], size: str, where: str) -> tuple[str, ...]:
    """``("g5", "g6")`` + ``"xlarge"`` -> ``("g5.xlarge", "g6.xlarge")``; unknown families or sizes are errors."""
    unknown = [f for f in families if f not in GPU_FAMILIES]
    if unknown:
        raise ValidationError(
            f"{where}: gpu_families has {', '.join(unknown)}, which are not NVIDIA GPU families: "
            f"use {', '.join(GPU_FAMILIES)}"
        )
    missing = [f for f in families if size not in GPU_FAMILIES[f].gpus_by_size]
    if missing:
        detail = "; ".join(f"{f} sells {', '.join(GPU_FAMILIES[f].gpus_by_size)}" for f in missing)
        raise ValidationError(
            f"{where}: gpu_instance_size {size!r} does not exist in {', '.join(missing)} ({detail}): "
            "pick a size every family sells, or list gpu_instance_types explicitly"
        )
    return tuple(f"{f}.{size}" for f in families)


def require_gpu_instance_types(where: str, instance_types: Sequence[str]) -> None:
    """Raise when any type has no NVIDIA GPU: a GPU task would never be placed on it."""
    bad = [t for t in instance_types if not is_gpu_instance_type(t)]
    if bad:
        raise ValidationError(
            f"{where}: {', '.join(bad)} {'is not a GPU instance type' if len(bad) == 1 else 'are not GPU instance types'}"
            f" but the cluster runs GPU tasks: use NVIDIA GPU families ({', '.join(GPU_FAMILIES)}) "
            "or turn gpu off"
        )


def require_gpu_requirements(where: str, requirements) -> None:
    """Attribute-based selection in a GPU cluster must ask for NVIDIA GPUs."""
    if tuple(requirements.accelerator_manufacturers) != ("nvidia",) or not (requirements.accelerator_count_min or 0) >= 1:
        raise ValidationError(
            f"{where}: instance_requirements must select NVIDIA GPUs in a GPU cluster: set "
            "accelerator_manufacturers=('nvidia',) and accelerator_count_min >= 1"
        )


def require_gpus_per_task(where: str, instance_types: Sequence[str], gpus_per_task: int) -> None:
    """Every listed type must hold at least one task, or tasks wait forever for a type that can't run them."""
    small = [(t, gpus_in(t)) for t in instance_types if gpus_in(t) is not None and gpus_in(t) < gpus_per_task]
    if small:
        listing = ", ".join(f"{t} has {n}" for t, n in small)
        raise ValidationError(
            f"{where}: gpus_per_task is {gpus_per_task} but {listing} GPU(s): "
            "choose larger sizes or lower gpus_per_task"
        )
