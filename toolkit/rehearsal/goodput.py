"""What an interruption costs, carried from the drill's scaled-down window to AWS's 120 s notice.

Two derived timelines (seconds from the notice; every input is a parameter, nothing is measured here):

**Training, per interruption.** ``save``/``restore``: checkpoint save and restore times; ``boot``: a
replacement's launch-to-ready time; ``margin``: the agent's deadline margin; ``detect``: notice to agent
(about half the poll interval); ``periodic``: the baseline's checkpoint interval (seconds of compute).

- *baseline* (periodic checkpoints, restart after the reclaim): idle ``boot + restore`` from the reclaim,
  and on average ``periodic / 2`` of compute lost (computed again).
- *stop* (the agent before issue 16): training stops at the notice for a checkpoint, the instance idles
  until the reclaim, the replacement boots after it: idle ``notice - detect + boot + restore``.
- *checkpoint-and-continue + hand-off*: an insurance checkpoint at the notice (``save`` of training
  paused), training until ``notice - margin - save``, the final checkpoint, and a replacement launched
  at the notice (or ``rebalance_lead`` earlier) resumes at ``max(notice - margin, launch + boot) + restore``:
  idle ``2 * save + restore + max(0, launch + boot - (notice - margin))``. A replacement that is ready
  early waits (``standby``: paid, not training).

**Inference (ECS managed draining).** With ``ECS_ENABLE_SPOT_INSTANCE_DRAINING`` the ECS agent sets the
instance DRAINING at the notice; the service (``minimumHealthyPercent`` 100, ``maximumPercent`` 200)
starts the replacement task elsewhere first and stops the old one when the new one is healthy. Without
it, the replacement starts only when ECS sees the task gone at the reclaim, and the load balancer keeps
sending requests to the dead target until its health check fails.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional

from spotkit.runtime.notice import SPOT_NOTICE_SECONDS

AWS_NOTICE_SECONDS = float(SPOT_NOTICE_SECONDS)


@dataclass(frozen=True)
class TrainingCost:
    """Seconds per interruption: ``idle`` (nothing training), ``lost`` (compute done again), ``standby``
    (a booted replacement waiting for the final checkpoint)."""

    idle: float
    lost: float
    standby: float = 0.0

    @property
    def overhead(self) -> float:
        return self.idle + self.lost

    def to_dict(self) -> dict:
        return {**asdict(self), "overhead": self.overhead}


def training_costs(*, save: float, restore: float, boot: float, notice: float = AWS_NOTICE_SECONDS,
                   margin: float = 15.0, detect: float = 1.0, periodic: float = 1800.0,
                   rebalance_lead: Optional[float] = None) -> dict[str, TrainingCost]:
    """Per-interruption cost under the baseline, the ``stop`` policy and ``checkpoint-and-continue``."""
    for name, value in (("save", save), ("restore", restore), ("boot", boot), ("margin", margin),
                        ("detect", detect), ("periodic", periodic)):
        if value < 0:
            raise ValueError(f"{name} must be 0 or more seconds (got {value})")
    if notice <= margin + save:
        raise ValueError(f"notice ({notice}) must exceed margin + save ({margin + save}): no time for a final checkpoint")
    launch = -rebalance_lead if rebalance_lead else detect
    final_done = notice - margin
    ready = launch + boot
    return {
        "baseline": TrainingCost(idle=boot + restore, lost=periodic / 2),
        "stop": TrainingCost(idle=notice - detect + boot + restore, lost=0.0),
        "checkpoint-and-continue": TrainingCost(idle=2 * save + restore + max(0.0, ready - final_done), lost=0.0,
                                                standby=max(0.0, final_done - ready)),
    }


@dataclass(frozen=True)
class InferenceHandoff:
    """Seconds from the notice: when the replacement task serves, and how long a replica is missing."""

    replacement_serving_at: float
    capacity_gap: float  # seconds with one replica fewer than desired
    failed_routing: float  # seconds the load balancer may still route to the reclaimed target


def inference_handoff(*, draining: bool, task_start: float, health_interval: float, healthy_threshold: int,
                      unhealthy_threshold: int, boot: float = 0.0, detect: float = 5.0,
                      notice: float = AWS_NOTICE_SECONDS) -> InferenceHandoff:
    """The replacement task's timeline with managed draining (``draining``) or without (at the reclaim).

    ``task_start``: image pull and model load on a host with room; ``boot``: an instance launch when the
    cluster has none (managed scaling); ``detect``: notice to DRAINING (the ECS agent polls IMDS).
    """
    healthy = health_interval * healthy_threshold
    if draining:
        serving = detect + boot + task_start + healthy
        # The old task serves until the new one is healthy (minimum healthy 100 %) or the reclaim.
        return InferenceHandoff(serving, max(0.0, serving - notice), 0.0)
    serving = notice + boot + task_start + healthy
    return InferenceHandoff(serving, serving - notice, health_interval * unhealthy_threshold)
