"""The interruption drill: a real training workload, interrupted N times, with and without the agent.

Each "instance" is a workload process (``toolkit.workload``) checkpointing to a directory that stands
for EFS, beside its own IMDS emulator. At seeded random moments the emulator announces a spot
interruption; ``notice_seconds`` later the instance is reclaimed (SIGKILL to its process group) and,
``replacement_seconds`` after that, a replacement resumes from the newest checkpoint.

- **agent** run: spotkit's agent watches the emulator; on the notice its hook asks the workload for a
  checkpoint and waits for it, then the agent sends SIGTERM (the workload checkpoints and exits).
- **baseline** run: the same schedule, periodic checkpoints only.

Measured per interruption: detection latency (notice visible -> agent saw it), checkpoint time,
steps lost (last completed step - step restored from), and time to resume (reclaim -> replacement
running again). An optional ``aws_step`` callback runs at every reclaim (the CLI uses it to re-attach
the instance's retained data volume on the local AWS target with the recovery runbook).

The domain here prints nothing; ``spotkit drill`` renders the table and the plot.
"""

from __future__ import annotations

import json
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

from toolkit import checkpoint
from toolkit.errors import ToolkitError

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class DrillSettings:
    """- ``interruptions``: how many reclaims to inject. Default 3.
    - ``seed``: the schedule's seed; the same seed gives the same schedule. Default 7.
    - ``steps``: training steps to finish. Default 40. ``step_seconds``: compute time per step. Default 0.5.
    - ``checkpoint_every``: periodic checkpoint interval in steps (both runs). Default 10.
    - ``notice_seconds``: notice to reclaim; AWS gives 120 s, the drill scales it down. Default 4.
    - ``replacement_seconds``: reclaim to replacement start. Default 1.
    - ``uptime_range``: an instance runs this many seconds (uniform, seeded) before its notice. Default 2-5.
    - ``agent_interval`` / ``margin``: agent poll interval and deadline margin, seconds. Defaults 0.2 and 0.5.
    """

    interruptions: int = 3
    seed: int = 7
    steps: int = 40
    step_seconds: float = 0.5
    checkpoint_every: int = 10
    notice_seconds: float = 4.0
    replacement_seconds: float = 1.0
    uptime_range: tuple[float, float] = (2.0, 5.0)
    agent_interval: float = 0.2
    margin: float = 0.5

    def validate(self) -> None:
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

    def schedule(self) -> list[float]:
        """Seconds of uptime of each interrupted instance before its notice."""
        rng = np.random.default_rng(self.seed)
        lo, hi = self.uptime_range
        return [round(float(x), 3) for x in rng.uniform(lo, hi, self.interruptions)]


@dataclass
class Interruption:
    index: int
    notice_at: float
    reclaimed_at: float
    detected_at: Optional[float] = None
    detection_seconds: Optional[float] = None
    checkpoint_seconds: Optional[float] = None
    last_step_before: int = 0
    restored_step: int = 0
    steps_lost: int = 0
    resumed_at: Optional[float] = None
    resume_seconds: Optional[float] = None
    aws: Optional[dict] = None


@dataclass
class RunResult:
    mode: str
    started_at: float
    finished_at: float
    final_step: int
    steps_computed: int
    interruptions: list[Interruption] = field(default_factory=list)
    progress: list[dict] = field(default_factory=list)

    @property
    def wall_seconds(self) -> float:
        return self.finished_at - self.started_at

    @property
    def steps_lost(self) -> int:
        return sum(i.steps_lost for i in self.interruptions)

    def summary(self) -> dict:
        def mean(values):
            values = [v for v in values if v is not None]
            return round(sum(values) / len(values), 4) if values else None

        return {
            "mode": self.mode,
            "wall_seconds": round(self.wall_seconds, 3),
            "final_step": self.final_step,
            "steps_computed": self.steps_computed,
            "steps_lost_total": self.steps_lost,
            "steps_lost_max": max((i.steps_lost for i in self.interruptions), default=0),
            "detection_seconds_mean": mean(i.detection_seconds for i in self.interruptions),
            "checkpoint_seconds_mean": mean(i.checkpoint_seconds for i in self.interruptions),
            "resume_seconds_mean": mean(i.resume_seconds for i in self.interruptions),
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


class _Instance:
    """One workload process in its own process group."""

    def __init__(self, settings: DrillSettings, ckpt_dir: Path, progress: Path):
        env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "toolkit.workload", "--checkpoint-dir", str(ckpt_dir),
             "--steps", str(settings.steps), "--step-seconds", str(settings.step_seconds),
             "--checkpoint-every", str(settings.checkpoint_every), "--progress", str(progress),
             "--seed", str(settings.seed)],
            env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self.pgid = os.getpgid(self.proc.pid)

    def reclaim(self) -> None:
        try:
            os.killpg(self.pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()


def run_once(mode: str, settings: DrillSettings, workdir: Path,
             aws_step: Optional[Callable[[int], dict]] = None,
             on_event: Optional[Callable[[str], None]] = None) -> RunResult:
    """One run of the drill, ``mode`` "agent" or "baseline"."""
    from toolkit.agent import AgentConfig, run_until_notice
    from toolkit.imds.emulator import EmulatorSettings, ImdsEmulator

    if mode not in ("agent", "baseline"):
        raise ValueError(f"mode must be agent or baseline, got {mode!r}")
    settings.validate()
    say = on_event or (lambda _msg: None)
    run_dir = workdir / mode
    ckpt_dir = run_dir / "efs-checkpoints"
    progress = run_dir / "progress.jsonl"
    run_dir.mkdir(parents=True, exist_ok=True)
    for old in [progress, *ckpt_dir.glob("*")]:
        old.unlink(missing_ok=True)

    started = time.time()
    interruptions: list[Interruption] = []
    aws_threads: list[threading.Thread] = []
    for index, uptime in enumerate(settings.schedule()):
        instance = _Instance(settings, ckpt_dir, progress)
        if interruptions and interruptions[-1].resumed_at is None:
            interruptions[-1].resumed_at = time.time()
        with ImdsEmulator(EmulatorSettings(imdsv2_required=True, lead_seconds=settings.notice_seconds)) as imds:
            agent_result: dict = {}
            agent_thread = None
            if mode == "agent":
                hook = (f"{sys.executable} -m toolkit.workload --request-checkpoint {instance.proc.pid} "
                        f"--checkpoint-dir {ckpt_dir} --timeout {settings.notice_seconds}")
                config = AgentConfig(on_notice=hook, workload_pgid=instance.pgid, interval=settings.agent_interval,
                                     margin=settings.margin, complete_lifecycle=False, once=True)
                stop = threading.Event()

                def watch():
                    try:
                        agent_result["result"] = run_until_notice(imds.url, config, stop=stop,
                                                                  log=lambda *a, **k: None)
                    except TimeoutError:
                        pass

                agent_thread = threading.Thread(target=watch, daemon=True)
                agent_thread.start()
            time.sleep(uptime)
            if instance.proc.poll() is not None:
                break  # finished training before this interruption
            import urllib.request

            req = urllib.request.Request(f"{imds.url}/spotkit/interrupt", method="POST",
                                         data=json.dumps({"kind": "spot", "lead_seconds": settings.notice_seconds}).encode())
            urllib.request.urlopen(req, timeout=5).read()
            notice_at = time.time()
            say(f"{mode}: interruption {index + 1}/{settings.interruptions}: notice at +{notice_at - started:.1f}s")
            time.sleep(settings.notice_seconds)
            reclaimed_at = time.time()
            instance.reclaim()
            if agent_thread:
                if "result" not in agent_result:
                    stop.set()
                agent_thread.join(timeout=5)
        events = [e for e in _read_progress(progress) if e.get("pid") == instance.proc.pid]
        last_step = max((e["step"] for e in events if e["event"] == "step"), default=0)
        newest = checkpoint.latest(ckpt_dir)
        restored = newest.step if newest else 0
        item = Interruption(index=index, notice_at=notice_at, reclaimed_at=reclaimed_at,
                            last_step_before=last_step, restored_step=restored,
                            steps_lost=max(0, last_step - restored))
        result = agent_result.get("result")
        if result is not None:
            item.detected_at = result.detected_at
            item.detection_seconds = round(max(0.0, result.detected_at - notice_at), 4)
        requested = [e for e in events if e["event"] == "checkpoint" and e.get("reason") in ("requested", "stop")]
        if requested:
            item.checkpoint_seconds = requested[-1]["seconds"]
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
        say(f"{mode}:   reclaimed; last step {last_step}, restored from {restored}, lost {item.steps_lost}")
        time.sleep(settings.replacement_seconds)

    final = _Instance(settings, ckpt_dir, progress)
    if interruptions and interruptions[-1].resumed_at is None:
        interruptions[-1].resumed_at = time.time()
    final.proc.wait()
    finished = time.time()
    for thread in aws_threads:
        thread.join(timeout=120)
    events = _read_progress(progress)
    for item in interruptions:
        resume = [e for e in events if e["event"] == "resume" and e["t"] >= item.reclaimed_at]
        if resume:
            item.resumed_at = resume[0]["t"]
            item.resume_seconds = round(item.resumed_at - item.reclaimed_at, 4)
    steps_computed = sum(1 for e in events if e["event"] == "step")
    final_step = max((e["step"] for e in events if e["event"] == "step"), default=0)
    return RunResult(mode=mode, started_at=started, finished_at=finished, final_step=final_step,
                     steps_computed=steps_computed, interruptions=interruptions, progress=events)


def run_drill(settings: DrillSettings, workdir: Path, aws_step: Optional[Callable[[int], dict]] = None,
              on_event: Optional[Callable[[str], None]] = None) -> dict[str, RunResult]:
    """Both runs on the same schedule: the agent first, then the baseline."""
    return {mode: run_once(mode, settings, workdir, aws_step if mode == "agent" else None, on_event)
            for mode in ("agent", "baseline")}


def plot(results: dict[str, RunResult], path: Path) -> Path:
    """A PNG of completed step over time for each run, with notices and reclaims marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(results), 1, figsize=(9, 3.2 * len(results)), sharex=True, squeeze=False)
    for ax, (mode, run) in zip(axes[:, 0], results.items()):
        steps = [(e["t"] - run.started_at, e["step"]) for e in run.progress if e["event"] == "step"]
        ckpts = [(e["t"] - run.started_at, e["step"]) for e in run.progress if e["event"] == "checkpoint"]
        if steps:
            ax.plot(*zip(*steps), ".", markersize=3, label="step completed")
        if ckpts:
            ax.plot(*zip(*ckpts), "s", markersize=5, fillstyle="none", label="checkpoint")
        for i, item in enumerate(run.interruptions):
            ax.axvline(item.notice_at - run.started_at, color="orange", linestyle="--",
                       label="notice" if i == 0 else None)
            ax.axvline(item.reclaimed_at - run.started_at, color="red", label="reclaim" if i == 0 else None)
        ax.set_title(f"{mode}: {run.steps_lost} steps lost over {len(run.interruptions)} interruptions, "
                     f"{run.wall_seconds:.1f} s to step {run.final_step}")
        ax.set_ylabel("training step")
        ax.legend(loc="upper left", fontsize=8)
    axes[-1, 0].set_xlabel("seconds since start")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
