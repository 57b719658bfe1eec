"""The stacks spotkit ships, by name. Importing this module is cheap: stack modules (and cdktn) are
imported only when a stack is built."""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from spotkit.errors import StackNotFoundError


@dataclass(frozen=True)
class StackSpec:
    name: str
    description: str
    module: str
    stack_class: str
    config_class: str

    def load(self):
        """Return (stack class, config class)."""
        mod = importlib.import_module(self.module)
        return getattr(mod, self.stack_class), getattr(mod, self.config_class)


STACKS: dict[str, StackSpec] = {
    spec.name: spec
    for spec in [
        StackSpec("notebook", "Persistent spot notebook: hibernates or stops when reclaimed, retained data volume, EFS checkpoints",
                  "spotkit.stacks.notebook", "NotebookStack", "NotebookConfig"),
        StackSpec("training", "Spot training fleet: mixed-instances group with rebalancing and a drain hook, in a small VPC",
                  "spotkit.stacks.training", "TrainingStack", "TrainingConfig"),
        StackSpec("ecs_spot", "ECS cluster for CPU services: spot and on-demand capacity providers with managed draining",
                  "spotkit.stacks.ecs_spot", "EcsSpotStack", "EcsSpotConfig"),
        StackSpec("gpu_inference", "GPU inference on spot: vLLM service behind an ALB, on-demand base, spot for the rest",
                  "spotkit.stacks.gpu_inference", "GpuInferenceStack", "GpuInferenceConfig"),
        StackSpec("eks_gpu", "EKS with spot GPU pools: on-demand system nodes, spot GPU node groups or Karpenter, EFS checkpoints",
                  "spotkit.stacks.eks_gpu", "EksGpuStack", "EksGpuConfig"),
    ]
}


def register(spec: StackSpec) -> None:
    STACKS[spec.name] = spec


def get(name: str) -> StackSpec:
    try:
        return STACKS[name]
    except KeyError:
        raise StackNotFoundError(
            f"unknown stack {name!r}",
            hint=f"stacks are: {', '.join(sorted(STACKS))} (see 'spotkit stacks')",
        ) from None


def resolve(names: list[str] | tuple[str, ...] | None) -> list[StackSpec]:
    if not names:
        return list(STACKS.values())
    return [get(n) for n in names]
