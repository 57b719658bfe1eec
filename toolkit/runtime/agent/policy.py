"""What the agent does with the notice window: stop at once, or checkpoint and keep training.

Standard library only, Python 3.9: this module ships in the agent artifact.

- ``stop`` (today's behaviour): run the ``on_notice`` hook (a checkpoint), then signal the workload
  at once. The instance then idles until the reclaim: up to the whole notice window (120 s on AWS).
- ``checkpoint-and-continue``: run the ``on_notice`` hook at once as insurance against an early
  reclaim and time it; the workload keeps training. At ``deadline - measured checkpoint time`` (the
  agent's deadline is already the notice time minus ``margin``) the agent sends the workload signal
  (SIGTERM: "final checkpoint and exit"), so the final checkpoint lands just before the deadline and
  an interruption costs one checkpoint instead of the notice window. A replacement started at the
  notice (or at the rebalance recommendation) resumes from that final checkpoint.

The workload protocol (``toolkit/rehearsal/workload.py`` implements it; any training loop can, see README):
SIGUSR1 = "checkpoint after this step and continue", SIGTERM = "checkpoint after this step and exit".
The hook (``python -m spotkit.rehearsal.workload --request-checkpoint PID ...`` or your own) sends SIGUSR1 and
returns when the checkpoint is durable; its run time is the measured checkpoint time.

If the insurance hook fails or is killed, the policy falls back to ``stop`` (signal now): a checkpoint
that cannot be trusted to finish is no reason to keep the workload running into the reclaim. An Auto
Scaling termination (lifecycle notice) is always handled as ``stop``: the group terminates an instance
once its replacement is up (capacity rebalancing) or to scale in, and its deadline (the hook's
heartbeat, 300 s by default) would keep a replacement waiting for minutes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Optional

STOP = "stop"
CHECKPOINT_AND_CONTINUE = "checkpoint-and-continue"
POLICIES = (CHECKPOINT_AND_CONTINUE, STOP)


def validate_policy(policy: str, *, on_notice: Optional[str], checkpoint_seconds: Optional[float]) -> None:
    """Raise ValueError (with the fix) for a policy the agent could not follow."""
    if policy not in POLICIES:
        raise ValueError(f"notice_policy must be one of {', '.join(POLICIES)} (got {policy!r})")
    if checkpoint_seconds is not None and checkpoint_seconds < 0:
        raise ValueError(f"checkpoint_seconds must be 0 or more (got {checkpoint_seconds})")
    if policy == CHECKPOINT_AND_CONTINUE and not on_notice and checkpoint_seconds is None:
        raise ValueError("notice_policy checkpoint-and-continue needs on_notice (the insurance checkpoint whose "
                         "run time it measures) or checkpoint_seconds (an estimate of one checkpoint's time)")


@dataclass(frozen=True)
class FinalPlan:
    """When to ask for the final checkpoint (epoch seconds) and why."""

    policy: str
    final_at: float  # when the workload signal goes out
    checkpoint_seconds: Optional[float]  # measured (hook run time) or the configured estimate
    measured: bool
    reason: str

    def to_dict(self) -> dict:
        return {"policy": self.policy, "final_at": self.final_at, "checkpoint_seconds": self.checkpoint_seconds,
                "measured": self.measured, "reason": self.reason}


def plan_final(policy: str, *, deadline: float, now: float, hook_seconds: Optional[float], hook_ok: Optional[bool],
               checkpoint_seconds: Optional[float] = None) -> FinalPlan:
    """When the workload signal goes out under ``policy``.

    ``deadline`` is the agent's deadline (notice time minus margin); ``hook_seconds``/``hook_ok`` describe
    the insurance hook (None: no hook ran). The final checkpoint is asked for at ``deadline`` minus the
    longer of the measured and the configured checkpoint time, and never before ``now``.
    """
    if policy == STOP:
        return FinalPlan(policy, now, hook_seconds, hook_seconds is not None, "stop policy: signal at once")
    if hook_ok is False:
        return FinalPlan(policy, now, hook_seconds, True, "the insurance checkpoint failed: signal at once")
    candidates = [s for s in (hook_seconds, checkpoint_seconds) if s is not None]
    seconds = max(candidates) if candidates else 0.0
    final_at = max(now, deadline - seconds)
    reason = "keep training; final checkpoint timed to end at the deadline"
    if final_at == now:
        reason = "no time left to keep training: signal at once"
    return FinalPlan(policy, final_at, seconds, hook_seconds is not None, reason)


def wait_until(when: float, *, workload_gone: Optional[Callable[[], bool]] = None,
               stopped: Optional[Callable[[], bool]] = None, poll: float = 0.05) -> str:
    """Sleep until ``when`` (epoch s). Returns "due", "workload-exited" (it finished on its own) or "stopped"."""
    while True:
        if stopped is not None and stopped():
            return "stopped"
        if workload_gone is not None and workload_gone():
            return "workload-exited"
        left = when - time.time()
        if left <= 0:
            return "due"
        time.sleep(min(poll, left))
