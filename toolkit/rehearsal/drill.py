"""The interruption drill: a real training workload, interrupted N times, with and without the agent.

Each "instance" is a workload process (``spotkit.rehearsal.workload``) checkpointing to a directory that stands
for EFS, beside its own IMDS emulator. At seeded random moments (``uptime`` after the previous reclaim)
the emulator announces a spot interruption, optionally preceded by a rebalance recommendation
(``rebalance_lead``, seeded, sometimes absent); ``notice_seconds`` later the instance is reclaimed
(SIGKILL to its process group).

- **agent** run: spotkit's agent watches the emulator with ``notice_policy`` (default
  ``checkpoint-and-continue``): its hook asks the workload for an insurance checkpoint at once, the
  workload keeps training, and at the deadline minus the measured checkpoint time the agent sends
  SIGTERM (final checkpoint, ``final.json`` marker, exit). The replacement is launched at the rebalance
  recommendation or the notice (what capacity rebalancing or the handler's start-replacement does),
  boots for ``replacement_seconds`` while the old instance still trains, and resumes from the final
  checkpoint the moment its marker appears (or from the newest checkpoint if the reclaim comes first).
- **baseline** run: what a user writes without spotkit: periodic checkpoints, and a new instance
  that boots after the reclaim (``replacement_seconds``) and resumes from the newest checkpoint.

Measured per run: wall time to the last step, overhead over the uninterrupted compute (steps x step
time), overhead and idle seconds per interruption, steps lost, goodput (useful compute / wall time),
which checkpoint each instance resumed from and which steps each computed (nothing may train twice
from one state). An optional ``aws_step`` callback runs at every reclaim (the CLI uses it to re-attach
the instance's retained data volume on the local AWS target with the recovery runbook).

The domain here prints nothing; ``spotkit drill`` renders the table and the plot.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from spotkit.errors import ToolkitError



POLICIES = ("checkpoint-and-continue", "stop")
CLOUDS = ("aws", "gcp", "azure")


@dataclass(frozen=True)
class DrillSettings:
    """- ``interruptions``: how many reclaims to inject. Default 3.
    - ``seed``: the schedule's seed; the same seed gives the same schedule. Default 7.
    - ``steps``: training steps to finish. Default 60 (the job must outlast its interruptions).
      ``step_seconds``: compute time per step. Default 0.5.
    - ``checkpoint_every``: periodic checkpoint interval in steps (both runs). Default 10.
    - ``notice_seconds``: notice to reclaim; AWS gives 120 s, the drill scales it down. Default 4.
    - ``replacement_seconds``: boot time of a replacement (from its launch to its process start). Default 1.
    - ``uptime_range``: seconds from the previous reclaim (or the start) to the next notice (uniform,
      seeded). Default 2-5.
    - ``agent_interval`` / ``margin``: agent poll interval and deadline margin, seconds. Defaults 0.2 and 0.5.
    - ``notice_policy``: the agent's policy, ``checkpoint-and-continue`` (default) or ``stop``.
    - ``rebalance_lead``: seconds a rebalance recommendation comes before the notice, present for about
      ``rebalance_share`` of the interruptions (seeded). Default: none.
    - ``handoff``: the agent run's replacement is launched at the rebalance/notice and resumes from the
      final checkpoint's marker. Default on; off, it boots after the reclaim like the baseline's (with
      ``notice_policy="stop"`` that is the agent before issue 16).
    - ``cloud``: whose metadata service the instances have: ``aws`` (default; the IMDS emulator),
      ``gcp`` (``instance/preempted``, no time given: the agent counts ``notice_seconds`` from detection)
      or ``azure`` (a ``Preempt`` scheduled event with ``NotBefore``; the reclaim comes as soon as the
      agent acknowledges it, as on Azure). GCP and Azure have no rebalance recommendation.
    """

    interruptions: int = 3
    seed: int = 7
    steps: int = 60
    step_seconds: float = 0.5
    checkpoint_every: int = 10
    notice_seconds: float = 4.0
    replacement_seconds: float = 1.0
    uptime_range: tuple[float, float] = (2.0, 5.0)
    agent_interval: float = 0.2
    margin: float = 0.5
    notice_policy: str = "checkpoint-and-continue"
    rebalance_lead: Optional[float] = None
    rebalance_share: float = 0.6
    handoff: bool = True
    cloud: str = "aws"

    def validate(self) -> None:
        if self.cloud not in CLOUDS:
            raise ToolkitError(f"cloud must be one of {', '.join(CLOUDS)} (got {self.cloud!r})",
                               hint="spotkit drill --cloud gcp")
        if self.cloud != "aws" and self.rebalance_lead is not None:
            raise ToolkitError(f"{self.cloud} gives no rebalance recommendation: --rebalance-lead is AWS-only",
                               hint=f"spotkit drill --cloud {self.cloud} (without --rebalance-lead)")
        if self.interruptions < 0:
            raise ToolkitError(f"interruptions must be 0 or more (got {self.interruptions})")
        if self.step_seconds <= 0 or self.steps <= 0:
            raise ToolkitError("steps and step_seconds must be more than 0")
        if self.notice_seconds <= self.step_seconds + self.agent_interval + self.margin:
            raise ToolkitError(
                f"notice_seconds ({self.notice_seconds}) must exceed step_seconds + agent_interval + margin "
                f"({self.step_seconds + self.agent_interval + self.margin:.2f}): the workload could never "
                "finish a step and checkpoint inside the notice",
                hint="raise --notice-seconds or lower --step-seconds",
            )
        if self.notice_policy not in POLICIES:
            raise ToolkitError(f"notice_policy must be one of {', '.join(POLICIES)} (got {self.notice_policy!r})",
                               hint="spotkit drill --notice-policy checkpoint-and-continue")
        longest = self.interruptions * (self.uptime_range[1] + self.notice_seconds)
        if self.interruptions and self.compute_seconds <= longest:
            raise ToolkitError(
                f"{self.steps} steps of {self.step_seconds} s ({self.compute_seconds:.1f} s of compute) may finish "
                f"before the last of {self.interruptions} interruptions (up to {longest:.1f} s away): both runs must "
                "see every interruption to be compared",
                hint=f"raise --steps to {int(longest / self.step_seconds) + 1} or more, or lower --interruptions")
        if self.replacement_seconds < 0:
            raise ToolkitError(f"replacement_seconds must be 0 or more (got {self.replacement_seconds})")
        if self.rebalance_lead is not None and self.rebalance_lead <= 0:
            raise ToolkitError(f"rebalance_lead must be more than 0 seconds (got {self.rebalance_lead})",
                               hint="leave out --rebalance-lead for no rebalance recommendations")

    def schedule(self) -> list[float]:
        """Seconds from the previous reclaim (or the start) to each notice."""
        rng = np.random.default_rng(self.seed)
        lo, hi = self.uptime_range
        return [round(float(x), 3) for x in rng.uniform(lo, hi, self.interruptions)]

    def rebalance_schedule(self) -> list[Optional[float]]:
        """Per interruption: seconds the rebalance recommendation comes ahead of the notice, or None."""
        if self.rebalance_lead is None:
            return [None] * self.interruptions
        rng = np.random.default_rng([self.seed, 1])
        draws = rng.uniform(0, 1, self.interruptions)
        return [self.rebalance_lead if x < self.rebalance_share else None for x in draws]

    @property
    def compute_seconds(self) -> float:
        """The uninterrupted compute: steps x step time."""
        return self.steps * self.step_seconds


@dataclass
class Interruption:
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


def _read_progress(path: Path) -> list[dict]:
    if not path.exists():
        return []
    events = []
    for line in path.read_text().splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line torn by SIGKILL
    return events


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


class _Instance:
    """One workload process in its own process group."""

    def __init__(self, settings: DrillSettings, ckpt_dir: Path, progress: Path, wait_for_final: Optional[float] = None):
        env = dict(os.environ)  # the workload imports the installed spotkit, as this process does
        argv = [sys.executable, "-m", "spotkit.rehearsal.workload", "--checkpoint-dir", str(ckpt_dir),
                "--steps", str(settings.steps), "--step-seconds", str(settings.step_seconds),
                "--checkpoint-every", str(settings.checkpoint_every), "--progress", str(progress),
                "--seed", str(settings.seed)]
        if wait_for_final is not None:
            argv += ["--wait-for-final", f"{max(0.0, wait_for_final):.3f}"]
        self.launched_at = time.time()
        self.proc = subprocess.Popen(argv, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        self.pgid = os.getpgid(self.proc.pid)

    def reclaim(self) -> None:
        try:
            os.killpg(self.pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()


class _Replacement:
    """A replacement launched at ``launched_at`` that starts its workload ``boot`` seconds later (in a thread)."""

    def __init__(self, settings: DrillSettings, ckpt_dir: Path, progress: Path, wait_until: Optional[float]):
        self.launched_at = time.time()
        self.instance: Optional[_Instance] = None

        def boot():
            time.sleep(settings.replacement_seconds)
            wait = None if wait_until is None else wait_until - time.time()
            self.instance = _Instance(settings, ckpt_dir, progress, wait_for_final=wait)

        self.thread = threading.Thread(target=boot, daemon=True)
        self.thread.start()

    def join(self) -> _Instance:
        self.thread.join()
        assert self.instance is not None
        return self.instance


def _post(url: str, body: dict) -> None:
    import urllib.request

    req = urllib.request.Request(url, method="POST", data=json.dumps(body).encode())
    urllib.request.urlopen(req, timeout=5).read()


def _whole_second_action(notice: float, lead: float) -> float:
    """The first moment from ``notice`` whose action time (``+ lead``) falls on a whole second.

    IMDS gives the action time to the second (``2026-11-29T19:20:19Z``), as AWS does; on a 120 s notice
    the truncation is noise, on the drill's 4 s it would cut up to a second off the window the agent sees.
    """
    return math.ceil(notice + lead) - lead + 0.005


def _sleep_until(when: float, instance: _Instance) -> bool:
    """Sleep until ``when``; False if the instance's workload exits first (training finished)."""
    while time.time() < when:
        if instance.proc.poll() is not None:
            return False
        time.sleep(min(0.02, max(0.0, when - time.time())))
    return instance.proc.poll() is None


def _cloud_emulator(settings: DrillSettings):
    """The metadata emulator of ``settings.cloud``, and the body of its ``/spotkit/interrupt`` for the notice."""
    if settings.cloud == "gcp":
        from spotkit.rehearsal.imds.gcp import GcpEmulator

        return GcpEmulator(), {"kind": "preempt"}
    if settings.cloud == "azure":
        from spotkit.rehearsal.imds.azure import AzureEmulator, AzureSettings

        return (AzureEmulator(AzureSettings(lead_seconds=settings.notice_seconds)),
                {"kind": "preempt", "lead_seconds": settings.notice_seconds})
    from spotkit.rehearsal.imds.emulator import EmulatorSettings, ImdsEmulator

    return (ImdsEmulator(EmulatorSettings(imdsv2_required=True, lead_seconds=settings.notice_seconds)),
            {"kind": "spot", "lead_seconds": settings.notice_seconds})


def _sleep_until_reclaim(when: float, emulator) -> None:
    """Until ``when``; on Azure the platform goes ahead as soon as the event is acknowledged (StartRequests)."""
    acked = getattr(emulator, "snapshot", None)
    while time.time() < when:
        if acked is not None and acked()["start_requests"]:
            return
        time.sleep(min(0.02, max(0.0, when - time.time())))


def run_once(mode: str, settings: DrillSettings, workdir: Path,
             aws_step: Optional[Callable[[int], dict]] = None,
             on_event: Optional[Callable[[str], None]] = None) -> RunResult:
    """One run of the drill, ``mode`` "agent" or "baseline"."""
    from spotkit.runtime.agent import AgentConfig, JsonLogger, run_until_notice

    if mode not in ("agent", "baseline"):
        raise ValueError(f"mode must be agent or baseline, got {mode!r}")
    settings.validate()
    say = on_event or (lambda _msg: None)
    run_dir = workdir / mode
    ckpt_dir = run_dir / "efs-checkpoints"
    progress = run_dir / "progress.jsonl"
    run_dir.mkdir(parents=True, exist_ok=True)
    for old in [progress, run_dir / "agent.jsonl", *ckpt_dir.glob("*"), *ckpt_dir.glob(".*")]:
        old.unlink(missing_ok=True)

    started = time.time()
    interruptions: list[Interruption] = []
    aws_threads: list[threading.Thread] = []
    instance = _Instance(settings, ckpt_dir, progress)
    anchor = started
    rebalances = settings.rebalance_schedule()
    for index, uptime in enumerate(settings.schedule()):
        notice_due = _whole_second_action(anchor + uptime, settings.notice_seconds)
        reclaim_due = notice_due + settings.notice_seconds
        lead = rebalances[index]
        emulator, notice_body = _cloud_emulator(settings)
        with emulator as imds:
            agent_result: dict = {}
            agent_thread = None
            stop = threading.Event()
            if mode == "agent":
                hook = (f"{sys.executable} -m spotkit.rehearsal.workload --request-checkpoint {instance.proc.pid} "
                        f"--checkpoint-dir {ckpt_dir} --timeout {settings.notice_seconds}")
                config = AgentConfig(on_notice=hook, workload_pgid=instance.pgid, interval=settings.agent_interval,
                                     margin=settings.margin, complete_lifecycle=False, once=True,
                                     notice_policy=settings.notice_policy, cloud=settings.cloud,
                                     notice_seconds=settings.notice_seconds if settings.cloud != "aws" else None,
                                     wait_seconds=1.0)

                def watch(config=config):
                    try:
                        with open(run_dir / "agent.jsonl", "a") as agent_log:
                            agent_result["result"] = run_until_notice(imds.url, config, stop=stop,
                                                                      log=JsonLogger(agent_log))
                    except TimeoutError:
                        pass

                agent_thread = threading.Thread(target=watch, daemon=True)
                agent_thread.start()
            replacement: Optional[_Replacement] = None
            rebalance_at = None
            if lead is not None:
                if not _sleep_until(max(anchor, notice_due - lead), instance):
                    stop.set()
                    break  # finished training before this interruption
                _post(f"{imds.url}/spotkit/interrupt", {"kind": "rebalance", "lead_seconds": settings.notice_seconds})
                rebalance_at = time.time()
                if mode == "agent" and settings.handoff:  # capacity rebalancing launches the replacement now
                    replacement = _Replacement(settings, ckpt_dir, progress, wait_until=reclaim_due)
            if not _sleep_until(notice_due, instance):
                stop.set()
                if replacement is not None:
                    replacement.join().reclaim()  # launched for a reclaim that never came
                break
            _post(f"{imds.url}/spotkit/interrupt", notice_body)
            notice_at = time.time()
            if mode == "agent" and settings.handoff and replacement is None:  # the handler's start-replacement
                replacement = _Replacement(settings, ckpt_dir, progress, wait_until=reclaim_due)
            say(f"{mode}: interruption {index + 1}/{settings.interruptions}: notice at +{notice_at - started:.1f}s"
                + (f" (rebalance {lead:.1f}s ahead)" if rebalance_at else ""))
            _sleep_until_reclaim(reclaim_due, imds)
            reclaimed_at = time.time()
            instance.reclaim()
            if agent_thread:
                if "result" not in agent_result:
                    stop.set()
                agent_thread.join(timeout=5)
        if replacement is None:  # the baseline: a new instance boots after the reclaim
            time.sleep(settings.replacement_seconds)
            new = _Instance(settings, ckpt_dir, progress)
            launched_at = reclaimed_at
        else:
            new = replacement.join()
            launched_at = replacement.launched_at
        item = Interruption(index=index, notice_at=notice_at, reclaimed_at=reclaimed_at, rebalance_at=rebalance_at,
                            replacement_launched_at=launched_at, old_pid=instance.proc.pid, new_pid=new.proc.pid)
        result = agent_result.get("result")
        if result is not None:
            item.detected_at = result.detected_at
            item.detection_seconds = round(max(0.0, result.detected_at - notice_at), 4)
            item.final_requested_at = result.signal_sent_at
        if aws_step:
            # On AWS the replacement boots while recovery runs: do the AWS step beside the replacement.
            def aws_in_background(item=item, index=index):
                item.aws = aws_step(index)

            for previous in aws_threads:
                previous.join(timeout=120)
            aws_thread = threading.Thread(target=aws_in_background, daemon=True)
            aws_thread.start()
            aws_threads.append(aws_thread)
        interruptions.append(item)
        say(f"{mode}:   reclaimed at +{reclaimed_at - started:.1f}s")
        instance, anchor = new, reclaimed_at

    instance.proc.wait()
    for thread in aws_threads:
        thread.join(timeout=120)
    events = _read_progress(progress)
    steps = [e for e in events if e["event"] == "step"]
    final_step = max((e["step"] for e in steps), default=0)
    finished = max((e["t"] for e in steps if e["step"] == final_step), default=time.time())
    idle = idle_intervals(events, started, finished, settings.step_seconds)
    for n, item in enumerate(interruptions):
        old = [e for e in events if e.get("pid") == item.old_pid]
        new = [e for e in events if e.get("pid") == item.new_pid]
        item.last_step_before = max((e["step"] for e in old if e["event"] == "step"), default=0)
        requested = [e for e in old if e["event"] == "checkpoint" and e.get("reason") == "requested"]
        if requested:
            item.checkpoint_seconds = requested[0]["seconds"]
        marker = [e for e in old if e["event"] == "final-marker"]
        if marker:  # when the final checkpoint was durable (the marker follows it; its log line may come late)
            saved = [e["t"] for e in old if e["event"] == "checkpoint" and e["step"] == marker[0]["step"]]
            item.final_checkpoint_at = saved[-1] if saved else marker[0]["t"]
        resume = [e for e in new if e["event"] == "resume"]
        if resume:
            item.restored_step = resume[0]["step"]
            item.resumed_from = resume[0].get("from_checkpoint")
            item.handoff = bool(resume[0].get("handoff"))
            item.resumed_at = resume[0]["t"]
            item.resume_seconds = round(item.resumed_at - item.reclaimed_at, 4)
        item.steps_lost = max(0, item.last_step_before - item.restored_step)
        # Idle time of this interruption: gaps from its notice (or rebalance) until the next notice.
        window_end = interruptions[n + 1].notice_at if n + 1 < len(interruptions) else finished
        window_start = min(x for x in (item.notice_at, item.rebalance_at) if x is not None)
        item.idle_seconds = round(sum(max(0.0, min(b, window_end) - max(a, window_start)) for a, b in idle), 4)
        say(f"{mode}:   interruption {n + 1}: last step {item.last_step_before}, resumed from {item.restored_step}"
            f"{' (hand-off)' if item.handoff else ''}, lost {item.steps_lost}, idle {item.idle_seconds:.2f}s")
    return RunResult(mode=mode, started_at=started, finished_at=finished, final_step=final_step,
                     steps_computed=len(steps), compute_seconds=settings.compute_seconds, interruptions=interruptions,
                     progress=events, idle=idle, policy=settings.notice_policy if mode == "agent" else None)


def run_drill(settings: DrillSettings, workdir: Path, aws_step: Optional[Callable[[int], dict]] = None,
              on_event: Optional[Callable[[str], None]] = None) -> dict[str, RunResult]:
    """Both runs on the same schedule: the agent first, then the baseline."""
    return {mode: run_once(mode, settings, workdir, aws_step if mode == "agent" else None, on_event)
            for mode in ("agent", "baseline")}


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


def plot(results: dict[str, RunResult], path: Path) -> Path:
    """A PNG of completed step over time for each run: notices, reclaims and idle intervals marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(results), 1, figsize=(9, 3.4 * len(results)), sharex=True, squeeze=False)
    for ax, (mode, run) in zip(axes[:, 0], results.items()):
        pids = []
        for e in run.progress:
            if e.get("pid") not in pids:
                pids.append(e.get("pid"))
        for n, pid in enumerate(pids):
            steps = [(e["t"] - run.started_at, e["step"]) for e in run.progress
                     if e["event"] == "step" and e["pid"] == pid]
            if steps:
                ax.plot(*zip(*steps), ".", markersize=3, color=f"C{n % 10}",
                        label="steps (one colour per instance)" if n == 0 else None)
        ckpts = [(e["t"] - run.started_at, e["step"]) for e in run.progress if e["event"] == "checkpoint"]
        if ckpts:
            ax.plot(*zip(*ckpts), "s", markersize=5, fillstyle="none", color="black", label="checkpoint")
        for i, (lo, hi) in enumerate(run.idle):
            ax.axvspan(lo - run.started_at, hi - run.started_at, color="grey", alpha=0.3,
                       label="idle (nothing training)" if i == 0 else None)
        for i, item in enumerate(run.interruptions):
            if item.rebalance_at:
                ax.axvline(item.rebalance_at - run.started_at, color="purple", linestyle=":",
                           label="rebalance" if not any(x.rebalance_at for x in run.interruptions[:i]) else None)
            ax.axvline(item.notice_at - run.started_at, color="orange", linestyle="--",
                       label="notice" if i == 0 else None)
            ax.axvline(item.reclaimed_at - run.started_at, color="red", label="reclaim" if i == 0 else None)
        per = run.overhead_per_interruption
        title = f"{mode}{f' ({run.policy})' if run.policy else ''}: {run.wall_seconds:.1f} s to step {run.final_step}, "
        title += f"goodput {run.goodput:.0%}, {run.steps_lost} steps lost"
        if per is not None:
            title += f", overhead {per:.2f} s/interruption"
        ax.set_title(title, fontsize=10)
        ax.set_ylabel("training step")
        ax.legend(loc="upper left", fontsize=7)
    axes[-1, 0].set_xlabel("seconds since start")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
