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

This module is the simulation: it runs the instances, posts the notices, reclaims, and records what
happened (a ``Timeline``); ``spotkit.rehearsal.drill_analysis`` turns the timeline into the figures (it is where
``Interruption``, ``RunResult``, ``idle_intervals`` and ``compare`` live; they are re-exported here).
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
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from spotkit.rehearsal.drill_analysis import (  # noqa: F401  (re-exported: the drill's public names stay here)
    Interruption,
    RunResult,
    Timeline,
    analyze,
    compare,
    idle_intervals,
    interruption_line,
    plot_inputs,
    report,
)
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


def _sleep_until_reclaim(when: float, emulator) -> Optional[bool]:
    """Until ``when``; on Azure the platform goes ahead as soon as the event is acknowledged (StartRequests).
    Returns, on Azure, whether the emulator had recorded the acknowledgement when the wait ended (its own
    record: one event per emulator); None on the other clouds."""
    snapshot = getattr(emulator, "snapshot", None)
    if snapshot is None:
        time.sleep(max(0.0, when - time.time()))
        return None
    while time.time() < when:
        if snapshot()["start_requests"]:
            return True
        time.sleep(min(0.02, max(0.0, when - time.time())))
    return bool(snapshot()["start_requests"])


@dataclass(frozen=True)
class _Run:
    """What the interruptions of one run share: its mode, settings, files, start and progress messages."""

    mode: str
    settings: DrillSettings
    run_dir: Path
    started: float
    say: Callable[[str], None]

    @property
    def ckpt_dir(self) -> Path:
        return self.run_dir / "efs-checkpoints"

    @property
    def progress(self) -> Path:
        return self.run_dir / "progress.jsonl"

    @property
    def handoff(self) -> bool:
        """The replacement launches at the rebalance/notice (agent run with ``handoff``)."""
        return self.mode == "agent" and self.settings.handoff

    def launch(self, wait_until: Optional[float] = None) -> _Instance:
        return _Instance(self.settings, self.ckpt_dir, self.progress, wait_for_final=wait_until)

    def replacement(self, reclaim_due: float) -> _Replacement:
        return _Replacement(self.settings, self.ckpt_dir, self.progress, wait_until=reclaim_due)


def _fresh_run(mode: str, settings: DrillSettings, workdir: Path, say: Callable[[str], None]) -> _Run:
    """The run's directory, emptied of a previous run's progress, agent log and checkpoints."""
    run = _Run(mode, settings, workdir / mode, time.time(), say)
    run.run_dir.mkdir(parents=True, exist_ok=True)
    for old in [run.progress, run.run_dir / "agent.jsonl", *run.ckpt_dir.glob("*"), *run.ckpt_dir.glob(".*")]:
        old.unlink(missing_ok=True)
    return run


class _AgentWatch:
    """spotkit's agent on ``instance``, watching ``imds_url`` in a thread until the notice it acts on."""

    def __init__(self, run: _Run, instance: _Instance, imds_url: str):
        from spotkit.runtime.agent import AgentConfig, JsonLogger, run_until_notice

        s = run.settings
        hook = (f"{sys.executable} -m spotkit.rehearsal.workload --request-checkpoint {instance.proc.pid} "
                f"--checkpoint-dir {run.ckpt_dir} --timeout {s.notice_seconds}")
        config = AgentConfig(on_notice=hook, workload_pgid=instance.pgid, interval=s.agent_interval, margin=s.margin,
                             complete_lifecycle=False, once=True, notice_policy=s.notice_policy, cloud=s.cloud,
                             notice_seconds=s.notice_seconds if s.cloud != "aws" else None, wait_seconds=1.0)
        self.stop = threading.Event()
        self.result = None

        def watch():
            try:
                with open(run.run_dir / "agent.jsonl", "a") as agent_log:
                    self.result = run_until_notice(imds_url, config, stop=self.stop, log=JsonLogger(agent_log))
            except TimeoutError:
                pass

        self.thread = threading.Thread(target=watch, daemon=True)
        self.thread.start()

    def finish(self):
        """The agent's result after the reclaim (None if it saw no notice); stops it if still watching."""
        if self.result is None:
            self.stop.set()
        self.thread.join(timeout=5)
        return self.result


class _AwsSteps:
    """``aws_step(index)`` at every reclaim, in the background beside the replacement's boot (as on AWS,
    where the replacement boots while recovery runs), one at a time; its answer goes to ``item.aws``."""

    def __init__(self, aws_step: Optional[Callable[[int], dict]]):
        self.aws_step = aws_step
        self.threads: list[threading.Thread] = []

    def start(self, item: Interruption) -> None:
        if not self.aws_step:
            return
        for previous in self.threads:
            previous.join(timeout=120)

        def step(item=item):
            item.aws = self.aws_step(item.index)

        thread = threading.Thread(target=step, daemon=True)
        thread.start()
        self.threads.append(thread)

    def join(self) -> None:
        for thread in self.threads:
            thread.join(timeout=120)


def _interrupt(run: _Run, index: int, instance: _Instance, anchor: float) -> Optional[tuple[Interruption, _Instance]]:
    """Interruption ``index`` of ``instance`` (up since ``anchor``): the rebalance recommendation if the
    schedule has one, the notice, the reclaim. Returns what happened and the instance that trains on,
    or None when the workload finished training first."""
    s = run.settings
    notice_due = _whole_second_action(anchor + s.schedule()[index], s.notice_seconds)
    reclaim_due = notice_due + s.notice_seconds
    lead = s.rebalance_schedule()[index]
    emulator, notice_body = _cloud_emulator(s)
    with emulator as imds:
        watch = _AgentWatch(run, instance, imds.url) if run.mode == "agent" else None
        replacement, rebalance_at = None, None
        if lead is not None:
            if not _sleep_until(max(anchor, notice_due - lead), instance):
                if watch:
                    watch.stop.set()
                return None
            _post(f"{imds.url}/spotkit/interrupt", {"kind": "rebalance", "lead_seconds": s.notice_seconds})
            rebalance_at = time.time()
            if run.handoff:  # capacity rebalancing launches the replacement now
                replacement = run.replacement(reclaim_due)
        if not _sleep_until(notice_due, instance):
            if watch:
                watch.stop.set()
            if replacement is not None:
                replacement.join().reclaim()  # launched for a reclaim that never came
            return None
        _post(f"{imds.url}/spotkit/interrupt", notice_body)
        notice_at = time.time()
        if run.handoff and replacement is None:  # the handler's start-replacement
            replacement = run.replacement(reclaim_due)
        run.say(f"{run.mode}: interruption {index + 1}/{s.interruptions}: notice at +{notice_at - run.started:.1f}s"
                + (f" (rebalance {lead:.1f}s ahead)" if rebalance_at else ""))
        acknowledged = _sleep_until_reclaim(reclaim_due, imds)
        reclaimed_at = time.time()
        instance.reclaim()
        agent = watch.finish() if watch else None
    if replacement is None:  # the baseline: a new instance boots after the reclaim
        time.sleep(s.replacement_seconds)
        new, launched_at = run.launch(), reclaimed_at
    else:
        new, launched_at = replacement.join(), replacement.launched_at
    item = Interruption(index=index, notice_at=notice_at, reclaimed_at=reclaimed_at, rebalance_at=rebalance_at,
                        replacement_launched_at=launched_at, old_pid=instance.proc.pid, new_pid=new.proc.pid,
                        detected_at=agent.detected_at if agent else None,
                        final_requested_at=agent.signal_sent_at if agent else None, acknowledged=acknowledged)
    return item, new


def record_run(mode: str, settings: DrillSettings, workdir: Path,
               aws_step: Optional[Callable[[int], dict]] = None,
               on_event: Optional[Callable[[str], None]] = None) -> Timeline:
    """The simulation of one run, ``mode`` "agent" or "baseline": launch the workload, interrupt it on
    the seeded schedule until training finishes, and return what happened (for ``analyze``)."""
    import spotkit.runtime.agent  # noqa: F401  (loaded before the run's clock starts, as on a booted instance)

    if mode not in ("agent", "baseline"):
        raise ValueError(f"mode must be agent or baseline, got {mode!r}")
    settings.validate()
    run = _fresh_run(mode, settings, workdir, on_event or (lambda _msg: None))
    interruptions: list[Interruption] = []
    aws = _AwsSteps(aws_step)
    instance, anchor = run.launch(), run.started
    for index in range(settings.interruptions):
        happened = _interrupt(run, index, instance, anchor)
        if happened is None:
            break  # finished training before this interruption
        item, new = happened
        aws.start(item)
        interruptions.append(item)
        run.say(f"{mode}:   reclaimed at +{item.reclaimed_at - run.started:.1f}s")
        instance, anchor = new, item.reclaimed_at
    instance.proc.wait()
    aws.join()
    return Timeline(mode=mode, started_at=run.started, ended_at=time.time(), interruptions=interruptions,
                    events=_read_progress(run.progress), policy=settings.notice_policy if mode == "agent" else None)


def run_once(mode: str, settings: DrillSettings, workdir: Path,
             aws_step: Optional[Callable[[int], dict]] = None,
             on_event: Optional[Callable[[str], None]] = None) -> RunResult:
    """One run of the drill, ``mode`` "agent" or "baseline": the simulation, then its analysis."""
    timeline = record_run(mode, settings, workdir, aws_step, on_event)
    result = analyze(timeline, settings.step_seconds, settings.compute_seconds)
    for item in result.interruptions:
        (on_event or (lambda _msg: None))(interruption_line(mode, item))
    return result


def run_drill(settings: DrillSettings, workdir: Path, aws_step: Optional[Callable[[int], dict]] = None,
              on_event: Optional[Callable[[str], None]] = None) -> dict[str, RunResult]:
    """Both runs on the same schedule: the agent first, then the baseline."""
    return {mode: run_once(mode, settings, workdir, aws_step if mode == "agent" else None, on_event)
            for mode in ("agent", "baseline")}


def plot(results: dict[str, RunResult], path: Path) -> Path:
    """A PNG of completed step over time for each run: notices, reclaims and idle intervals marked
    (what it draws: ``drill_analysis.plot_inputs``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(results), 1, figsize=(9, 3.4 * len(results)), sharex=True, squeeze=False)
    for ax, run in zip(axes[:, 0], results.values()):
        _draw(ax, plot_inputs(run))
    axes[-1, 0].set_xlabel("seconds since start")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _draw(ax, inputs: dict) -> None:
    """One run's panel of ``plot``."""
    for n, series in enumerate(inputs["steps"]):
        if series["points"]:
            ax.plot(*zip(*series["points"]), ".", markersize=3, color=f"C{n % 10}",
                    label="steps (one colour per instance)" if n == 0 else None)
    if inputs["checkpoints"]:
        ax.plot(*zip(*inputs["checkpoints"]), "s", markersize=5, fillstyle="none", color="black", label="checkpoint")
    for i, (lo, hi) in enumerate(inputs["idle"]):
        ax.axvspan(lo, hi, color="grey", alpha=0.3, label="idle (nothing training)" if i == 0 else None)
    for i, t in enumerate(inputs["rebalances"]):
        ax.axvline(t, color="purple", linestyle=":", label="rebalance" if i == 0 else None)
    for i, t in enumerate(inputs["notices"]):
        ax.axvline(t, color="orange", linestyle="--", label="notice" if i == 0 else None)
    for i, t in enumerate(inputs["reclaims"]):
        ax.axvline(t, color="red", label="reclaim" if i == 0 else None)
    ax.set_title(inputs["title"], fontsize=10)
    ax.set_ylabel("training step")
    ax.legend(loc="upper left", fontsize=7)
