"""The stacks that use ``InterruptionEvents``, as users deploy them: each shipped stack that routes
interruptions (stacks/*.py, defaults; eks_gpu in Karpenter mode), the user's own app of
``examples/own-stack``, and queue mode with ``grant_consume``. ``scenario(name)`` synthesizes one and
returns its JSON with the Terraform addresses of the construct's resources (``type.logical_id``), read
from the construct tree, so they are exactly the addresses a state of that stack holds."""

from __future__ import annotations

import os
import runpy
import tempfile
from pathlib import Path
from typing import Any, Callable

from tests.support.synth import build_stack, synth_json, synth_construct

ROOT = Path(__file__).resolve().parents[2]


def _training():
    from spotkit.stacks.training import TrainingConfig, TrainingStack

    _, stack = build_stack(TrainingStack, TrainingConfig())
    return stack, stack.interruptions


def _ecs_spot():
    from spotkit.stacks.ecs_spot import EcsSpotConfig, EcsSpotStack

    _, stack = build_stack(EcsSpotStack, EcsSpotConfig())
    return stack, stack.interruptions


def _gpu_inference():
    from spotkit.stacks.gpu_inference import GpuInferenceConfig, GpuInferenceStack

    _, stack = build_stack(GpuInferenceStack, GpuInferenceConfig())
    return stack, stack.interruptions


def _eks_gpu_karpenter():
    from spotkit.stacks.eks_gpu import EksGpuStack
    from spotkit.stacks.eks_gpu_config import EksGpuConfig

    _, stack = build_stack(EksGpuStack, EksGpuConfig(node_provisioning="karpenter"))
    return stack, stack.interruption


def _own_stack():
    """``examples/own-stack/main.py`` run as the user runs it (it synthesizes into a scratch folder)."""
    before = os.environ.get("CDKTF_OUTDIR")
    with tempfile.TemporaryDirectory(prefix="spotkit-own-stack-") as out:
        os.environ["CDKTF_OUTDIR"] = out
        try:
            app = runpy.run_path(str(ROOT / "examples" / "own-stack" / "main.py"))["app"]
        finally:
            if before is None:
                os.environ.pop("CDKTF_OUTDIR")
            else:
                os.environ["CDKTF_OUTDIR"] = before
    stack = app.node.find_child("my-training")
    return stack, stack.node.find_child("interruptions")


def _queue_mode_consumer():
    import warnings

    from spotkit.constructs.interruption_events import InterruptionEvents, InterruptionEventsSettings

    def build(st):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            events = InterruptionEvents(st, "ie", name="qq", groups=["g1"],
                                        settings=InterruptionEventsSettings(handler_mode="queue"))
        events.grant_consume("ops-role")
        return st, events

    _, built = synth_construct(build)
    return built


SCENARIOS: dict[str, Callable[[], tuple[Any, Any]]] = {
    "training": _training,
    "ecs_spot": _ecs_spot,
    "gpu_inference": _gpu_inference,
    "eks_gpu-karpenter": _eks_gpu_karpenter,
    "own-stack": _own_stack,
    "queue-mode-grant_consume": _queue_mode_consumer,
}


def construct_addresses(stack, construct) -> list[str]:
    """``type.logical_id`` of every Terraform resource in ``construct``'s subtree."""
    from cdktn import TerraformResource

    return sorted(f"{c.terraform_resource_type}.{c.friendly_unique_id}" for c in construct.node.find_all()
                  if isinstance(c, TerraformResource))


def scenario(name: str) -> tuple[dict, list[str]]:
    """(synthesized JSON of the scenario's stack, the addresses of its InterruptionEvents' resources)."""
    stack, construct = SCENARIOS[name]()
    return synth_json(stack), construct_addresses(stack, construct)
