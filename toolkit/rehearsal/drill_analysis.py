"""The drill's analysis: from what one run recorded (its timeline) to the figures. Pure: no processes,
no clock, no files.

The simulation (``spotkit.rehearsal.drill``) records a :class:`Timeline`: when the run started and ended, the
facts of each interruption as they happened (rebalance, notice, reclaim, the replacement's launch, the
agent's detection, the pids of the old and the new instance) and every line the workloads logged
(``progress.jsonl``: ``resume``, ``step``, ``checkpoint``, ``final-marker``, ``exit``; see
``spotkit.rehearsal.workload``). :func:`analyze` turns it into a :class:`RunResult`: wall time to the last step,
overhead over the uninterrupted compute, idle seconds, steps lost, goodput, which checkpoint each
instance resumed from. :func:`compare` sets the agent run against the baseline, :func:`report` is
``drill.json`` and :func:`plot_inputs` what ``spotkit drill`` draws in ``drill.png``.

Kept apart so that every figure can be checked on a hand-made timeline (tests/test_drill_analysis.py)
to the digit, without running a workload.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Optional


@dataclass
class Interruption:
    """One interruption. The simulation records the facts (``index`` to ``new_pid`` and ``aws``, epoch
    seconds); :func:`analyze` fills in what follows from the workloads' logs (``last_step_before`` on)."""

    index: int
    notice_at: float
    reclaimed_at: float
    rebalance_at: Optional[float] = None
    replacement_launched_at: Optional[float] = None
    detected_at: Optional[float] = None
    detection_seconds: Optional[float] = None
    checkpoint_seconds: Optional[float] = None
    final_requested_at: Optional[float] = None
    final_checkpoint_at: Optional[float] = None
    acknowledged: Optional[bool] = None  # Azure: the platform had the VM's StartRequests when it reclaimed
    last_step_before: int = 0
    restored_step: int = 0
    resumed_from: Optional[str] = None
    handoff: bool = False
    steps_lost: int = 0
    resumed_at: Optional[float] = None
    resume_seconds: Optional[float] = None  # reclaim -> replacement resumed (negative: before the reclaim)
    idle_seconds: float = 0.0
    old_pid: Optional[int] = None
    new_pid: Optional[int] = None
    aws: Optional[dict] = None


@dataclass(frozen=True)
class Timeline:
    """What one run of the drill recorded, for :func:`analyze`.

    - ``mode``: ``agent`` or ``baseline``; ``policy``: the agent's notice policy (None for the baseline).
    - ``started_at`` / ``ended_at``: epoch seconds of the first launch and of the last instance's exit
      (the end of the run only when no step was logged).
    - ``interruptions``: the recorded facts, in order.
    - ``events``: the progress lines of every instance, in the order they were written.
    """

    mode: str
    started_at: float
    ended_at: float
    interruptions: list[Interruption]
    events: list[dict]
    policy: Optional[str] = None


@dataclass
class RunResult:
    mode: str
    started_at: float
    finished_at: float
    final_step: int
    steps_computed: int
    compute_seconds: float = 0.0
    interruptions: list[Interruption] = field(default_factory=list)
    progress: list[dict] = field(default_factory=list)
    idle: list[tuple[float, float]] = field(default_factory=list)  # epoch intervals with no step computing
    policy: Optional[str] = None

    @property
    def wall_seconds(self) -> float:
        return self.finished_at - self.started_at

    @property
    def steps_lost(self) -> int:
        return sum(i.steps_lost for i in self.interruptions)

    @property
    def overhead_seconds(self) -> float:
        return self.wall_seconds - self.compute_seconds

    @property
    def overhead_per_interruption(self) -> Optional[float]:
        return self.overhead_seconds / len(self.interruptions) if self.interruptions else None

    @property
    def goodput(self) -> float:
        return self.compute_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0

    def resumes(self) -> list[dict]:
        """Every instance's start: pid, the checkpoint it resumed from, whether by hand-off."""
        return [{"pid": e["pid"], "step": e["step"], "from_checkpoint": e.get("from_checkpoint"),
                 "handoff": e.get("handoff", False), "t": e["t"]} for e in self.progress if e["event"] == "resume"]

    def duplicate_resumes(self) -> list[str]:
        """Checkpoints more than one instance resumed from (must be none)."""
        seen = [r["from_checkpoint"] for r in self.resumes() if r["from_checkpoint"]]
        return sorted({name for name in seen if seen.count(name) > 1})

    def steps_computed_twice(self) -> list[int]:
        """Step numbers computed more than once (each is a lost step computed again from the same state)."""
        counts: dict[int, int] = {}
        for e in self.progress:
            if e["event"] == "step":
                counts[e["step"]] = counts.get(e["step"], 0) + 1
        return sorted(step for step, n in counts.items() if n > 1)

    def concurrent_training_seconds(self) -> float:
        """Seconds during which two instances computed steps at the same time (must be 0 for a hand-off)."""
        spans: dict[int, tuple[float, float]] = {}
        for e in self.progress:
            if e["event"] == "step" and "started" in e:
                lo, hi = spans.get(e["pid"], (e["started"], e["t"]))
                spans[e["pid"]] = (min(lo, e["started"]), max(hi, e["t"]))
        ordered = sorted(spans.values())
        return round(sum(max(0.0, min(a[1], b[1]) - b[0]) for a, b in zip(ordered, ordered[1:])), 4)

    def summary(self) -> dict:
        """This run in ``drill.json``: the figures rounded, every resume and interruption."""
        def mean(values):
            values = [v for v in values if v is not None]
            return round(sum(values) / len(values), 4) if values else None

        n = len(self.interruptions)
        return {
            "mode": self.mode,
            "notice_policy": self.policy,
            "wall_seconds": round(self.wall_seconds, 3),
            "compute_seconds": round(self.compute_seconds, 3),
            "overhead_seconds": round(self.overhead_seconds, 3),
            "overhead_per_interruption": None if not n else round(self.overhead_per_interruption, 3),
            "idle_seconds_per_interruption": mean(i.idle_seconds for i in self.interruptions),
            "idle_seconds_total": round(sum(b - a for a, b in self.idle), 3),
            "goodput": round(self.goodput, 4),
            "final_step": self.final_step,
            "steps_computed": self.steps_computed,
            "steps_lost_total": self.steps_lost,
            "steps_lost_max": max((i.steps_lost for i in self.interruptions), default=0),
            "steps_computed_twice": self.steps_computed_twice(),
            "duplicate_resumes": self.duplicate_resumes(),
            "concurrent_training_seconds": self.concurrent_training_seconds(),
            "handoffs": sum(1 for i in self.interruptions if i.handoff),
            "detection_seconds_mean": mean(i.detection_seconds for i in self.interruptions),
            "checkpoint_seconds_mean": mean(i.checkpoint_seconds for i in self.interruptions),
            "resume_seconds_mean": mean(i.resume_seconds for i in self.interruptions),
            "resumes": self.resumes(),
            "idle_intervals": [[round(a - self.started_at, 3), round(b - self.started_at, 3)] for a, b in self.idle],
            "interruptions": [asdict(i) for i in self.interruptions],
        }


def idle_intervals(events: list[dict], start: float, end: float, step_seconds: float) -> list[tuple[float, float]]:
    """Epoch intervals in [start, end] during which no instance computed a step (boot, waits, lost time).

    Gaps shorter than a twentieth of a step (logging between two steps) are not idle."""
    spans = sorted((e.get("started", e["t"] - step_seconds), e["t"]) for e in events if e["event"] == "step")
    gaps, cursor = [], start
    for lo, hi in spans:
        if lo - cursor > step_seconds / 20:
            gaps.append((cursor, lo))
        cursor = max(cursor, hi)
    if end - cursor > step_seconds / 20:
        gaps.append((cursor, end))
    return gaps


def _figures(item: Interruption, events: list[dict]) -> Interruption:
    """``item`` with what the old instance's and the replacement's log lines say about it."""
    old = [e for e in events if e.get("pid") == item.old_pid]
    new = [e for e in events if e.get("pid") == item.new_pid]
    out = replace(item, last_step_before=max((e["step"] for e in old if e["event"] == "step"), default=0))
    if item.detected_at is not None:
        out.detection_seconds = round(max(0.0, item.detected_at - item.notice_at), 4)
    requested = [e for e in old if e["event"] == "checkpoint" and e.get("reason") == "requested"]
    if requested:
        out.checkpoint_seconds = requested[0]["seconds"]
    marker = [e for e in old if e["event"] == "final-marker"]
    if marker:  # when the final checkpoint was durable (the marker follows it; its log line may come late)
        saved = [e["t"] for e in old if e["event"] == "checkpoint" and e["step"] == marker[0]["step"]]
        out.final_checkpoint_at = saved[-1] if saved else marker[0]["t"]
    resume = [e for e in new if e["event"] == "resume"]
    if resume:
        out.restored_step = resume[0]["step"]
        out.resumed_from = resume[0].get("from_checkpoint")
        out.handoff = bool(resume[0].get("handoff"))
        out.resumed_at = resume[0]["t"]
        out.resume_seconds = round(out.resumed_at - item.reclaimed_at, 4)
    out.steps_lost = max(0, out.last_step_before - out.restored_step)
    return out


def _idle_in(idle: list[tuple[float, float]], start: float, end: float) -> float:
    """Idle seconds of ``idle`` that fall inside [start, end]."""
    return round(sum(max(0.0, min(b, end) - max(a, start)) for a, b in idle), 4)


def analyze(timeline: Timeline, step_seconds: float, compute_seconds: float) -> RunResult:
    """The figures of one run: ``step_seconds`` is a step's compute time, ``compute_seconds`` the
    uninterrupted compute (steps x step time) the wall time is set against.

    The run finishes at the last step's log line. An interruption's idle seconds are the idle time from
    its rebalance (or its notice) until the next interruption's notice (or the finish)."""
    events = timeline.events
    steps = [e for e in events if e["event"] == "step"]
    final_step = max((e["step"] for e in steps), default=0)
    finished = max((e["t"] for e in steps if e["step"] == final_step), default=timeline.ended_at)
    idle = idle_intervals(events, timeline.started_at, finished, step_seconds)
    recorded = timeline.interruptions
    interruptions = []
    for n, item in enumerate(recorded):
        figures = _figures(item, events)
        window_end = recorded[n + 1].notice_at if n + 1 < len(recorded) else finished
        window_start = min(x for x in (item.notice_at, item.rebalance_at) if x is not None)
        figures.idle_seconds = _idle_in(idle, window_start, window_end)
        interruptions.append(figures)
    return RunResult(mode=timeline.mode, started_at=timeline.started_at, finished_at=finished,
                     final_step=final_step, steps_computed=len(steps), compute_seconds=compute_seconds,
                     interruptions=interruptions, progress=events, idle=idle, policy=timeline.policy)


def compare(results: dict[str, RunResult]) -> dict:
    """The agent against the baseline of the same run: overhead ratio and goodput."""
    agent, base = results["agent"], results["baseline"]
    a, b = agent.overhead_per_interruption, base.overhead_per_interruption
    return {
        "overhead_per_interruption": {"agent": None if a is None else round(a, 4),
                                      "baseline": None if b is None else round(b, 4)},
        "overhead_ratio": None if not a or not b else round(a / b, 4),
        "goodput": {"agent": round(agent.goodput, 4), "baseline": round(base.goodput, 4)},
        "wall_seconds": {"agent": round(agent.wall_seconds, 3), "baseline": round(base.wall_seconds, 3)},
    }


def report(results: dict[str, RunResult]) -> dict:
    """``drill.json``: each run's summary by mode, and ``compare``."""
    return {**{mode: run.summary() for mode, run in results.items()}, "compare": compare(results)}


def interruption_line(mode: str, item: Interruption) -> str:
    """One interruption's outcome, as ``spotkit drill`` reports it while it runs."""
    return (f"{mode}:   interruption {item.index + 1}: last step {item.last_step_before}, resumed from "
            f"{item.restored_step}{' (hand-off)' if item.handoff else ''}, lost {item.steps_lost}, "
            f"idle {item.idle_seconds:.2f}s")


def plot_inputs(run: RunResult) -> dict:
    """What ``drill.png`` draws for one run, in seconds since its start.

    ``steps``: per instance (in order of its first log line) its pid and its (t, step) points, none for
    an instance reclaimed before its first step; ``checkpoints``:
    (t, step); ``idle``: (from, to); ``rebalances`` / ``notices`` / ``reclaims``: times; ``title``."""
    t0 = run.started_at
    pids: list = []
    for e in run.progress:
        if e.get("pid") not in pids:
            pids.append(e.get("pid"))
    steps = [{"pid": pid, "points": [(e["t"] - t0, e["step"]) for e in run.progress
                                     if e["event"] == "step" and e["pid"] == pid]} for pid in pids]
    per = run.overhead_per_interruption
    title = f"{run.mode}{f' ({run.policy})' if run.policy else ''}: {run.wall_seconds:.1f} s to step {run.final_step}, "
    title += f"goodput {run.goodput:.0%}, {run.steps_lost} steps lost"
    if per is not None:
        title += f", overhead {per:.2f} s/interruption"
    return {
        "steps": steps,
        "checkpoints": [(e["t"] - t0, e["step"]) for e in run.progress if e["event"] == "checkpoint"],
        "idle": [(lo - t0, hi - t0) for lo, hi in run.idle],
        "rebalances": [i.rebalance_at - t0 for i in run.interruptions if i.rebalance_at],
        "notices": [i.notice_at - t0 for i in run.interruptions],
        "reclaims": [i.reclaimed_at - t0 for i in run.interruptions],
        "title": title,
    }
