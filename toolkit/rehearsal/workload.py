"""A real, small training workload for drills and for rehearsing checkpoint hooks.

A two-layer NumPy MLP learns a fixed synthetic regression task by SGD. Each step's batch is derived
from (seed, step), so a run that is interrupted and resumed from a checkpoint follows exactly the
trajectory of an uninterrupted run: lost work shows up as repeated steps, never as a different model.

Signals (what spotkit's agent sends):
- SIGUSR1: write a checkpoint after the current step ("checkpoint now", the notice hook);
- SIGTERM: write a checkpoint after the current step and exit 0 (the workload is being preempted).
Without signals it checkpoints every ``checkpoint_every`` steps (the baseline behaviour).

Hand-off (``spotkit.rehearsal.checkpoint`` marker contract): after the SIGTERM checkpoint the workload writes
``final.json`` next to its checkpoints. A replacement started with ``--wait-for-final SECONDS`` (it was
launched during the notice window, while the old instance still trains) waits for that marker, claims
it and resumes from exactly that checkpoint; without a marker in time (the old instance was reclaimed
before its final checkpoint) it resumes from the newest checkpoint.

Progress goes to a JSON-lines file: ``{"t": unix time, "event": "resume|step|checkpoint|final-marker|exit",
"step": n, "pid": ..., ...}``; a step also has ``started`` (when its compute began), a resume has
``from_checkpoint`` (and, for a replacement, ``handoff`` and ``waited_seconds``).

    python -m spotkit.rehearsal.workload --checkpoint-dir DIR --steps 60 --step-seconds 0.5 --progress FILE
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spotkit.rehearsal import checkpoint

HIDDEN = 32
FEATURES = 16
BATCH = 64
LEARNING_RATE = 0.05


@dataclass
class TrainerConfig:
    checkpoint_dir: Path
    steps: int = 60
    step_seconds: float = 1.0
    checkpoint_every: int = 10
    progress: Path | None = None
    seed: int = 0
    keep: int = 3
    wait_for_final: float | None = None  # replacement: seconds to wait for the old instance's final.json


def init_params(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "w1": rng.normal(0, 0.3, (FEATURES, HIDDEN)),
        "b1": np.zeros(HIDDEN),
        "w2": rng.normal(0, 0.3, (HIDDEN, 1)),
        "b2": np.zeros(1),
    }


def _task(seed: int) -> np.ndarray:
    return np.random.default_rng(seed + 7919).normal(0, 1, (FEATURES, 1))


def batch(seed: int, step: int, true_w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([seed, step])
    x = rng.normal(0, 1, (BATCH, FEATURES))
    y = np.tanh(x @ true_w) + 0.01 * rng.normal(0, 1, (BATCH, 1))
    return x, y


def sgd_step(params: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray) -> float:
    h = np.tanh(x @ params["w1"] + params["b1"])
    pred = h @ params["w2"] + params["b2"]
    err = pred - y
    loss = float(np.mean(err ** 2))
    g_pred = 2 * err / len(x)
    g_w2 = h.T @ g_pred
    g_b2 = g_pred.sum(axis=0)
    g_h = g_pred @ params["w2"].T * (1 - h ** 2)
    params["w1"] -= LEARNING_RATE * (x.T @ g_h)
    params["b1"] -= LEARNING_RATE * g_h.sum(axis=0)
    params["w2"] -= LEARNING_RATE * g_w2
    params["b2"] -= LEARNING_RATE * g_b2
    return loss


class Trainer:
    """Runs the loop; ``request_checkpoint`` and ``request_stop`` are what the signal handlers call."""

    def __init__(self, config: TrainerConfig):
        self.config = config
        self._checkpoint_requested = False
        self._stop_requested = False
        self._progress = open(config.progress, "a", buffering=1) if config.progress else None

    def log(self, event: str, **fields) -> None:
        if self._progress:
            self._progress.write(json.dumps({"t": time.time(), "event": event, "pid": os.getpid(), **fields}) + "\n")

    def request_checkpoint(self, *_):
        self._checkpoint_requested = True

    def request_stop(self, *_):
        self._stop_requested = True
        self._checkpoint_requested = True

    def _save(self, step: int, params, reason: str) -> None:
        started = time.time()
        checkpoint.save(self.config.checkpoint_dir, step, params, {"reason": reason}, keep=self.config.keep)
        self.log("checkpoint", step=step, reason=reason, seconds=round(time.time() - started, 4))

    def run(self) -> int:
        """Train to ``steps``; return the last completed step."""
        cfg = self.config
        checkpoint.prepare(cfg.checkpoint_dir)  # an unwritable folder fails here, not at the first save
        true_w = _task(cfg.seed)
        handoff = {}
        found = None
        if cfg.wait_for_final is not None:
            waited = time.monotonic()
            marker = checkpoint.wait_for_final_marker(cfg.checkpoint_dir, cfg.wait_for_final)
            handoff = {"handoff": marker is not None, "waited_seconds": round(time.monotonic() - waited, 4)}
            if marker is not None:
                try:
                    found = checkpoint.load(checkpoint.checkpoint_path(cfg.checkpoint_dir, int(marker["step"])))
                except (OSError, ValueError, KeyError):
                    found = None  # unreadable: fall back to the newest that loads
        found = found or checkpoint.latest(cfg.checkpoint_dir)
        if found:
            params, step = {k: v.copy() for k, v in found.arrays.items()}, found.step
            self.log("resume", step=step, from_checkpoint=found.path.name, **handoff)
        else:
            params, step = init_params(cfg.seed), 0
            self.log("resume", step=0, from_checkpoint=None, **handoff)
        last_saved = step
        while step < cfg.steps and not self._stop_requested:
            started, started_at = time.monotonic(), time.time()
            x, y = batch(cfg.seed, step, true_w)
            loss = sgd_step(params, x, y)
            step += 1
            # The rest of the step's compute time: a step is only done when all of it has passed, even
            # when a checkpoint is requested meanwhile (sleep resumes after a signal handler, PEP 475).
            remaining = cfg.step_seconds - (time.monotonic() - started)
            if remaining > 0:
                time.sleep(remaining)
            self.log("step", step=step, loss=round(loss, 6), started=round(started_at, 4))
            if self._checkpoint_requested or step % cfg.checkpoint_every == 0 or step == cfg.steps:
                reason = "stop" if self._stop_requested else ("requested" if self._checkpoint_requested else "periodic")
                self._checkpoint_requested = False
                self._save(step, params, reason)
                last_saved = step
        if self._stop_requested and last_saved != step:
            self._save(step, params, "stop")
        if self._stop_requested:
            checkpoint.write_final_marker(cfg.checkpoint_dir, step)
            self.log("final-marker", step=step)
        self.log("exit", step=step, preempted=self._stop_requested)
        return step


def request_checkpoint(pid: int, checkpoint_dir: Path, timeout: float) -> int:
    """The notice hook for this workload: SIGUSR1 to ``pid``, then wait for a checkpoint newer than
    the one on disk now. Returns its step; raises TimeoutError after ``timeout`` seconds."""
    before = (checkpoint.list_steps(checkpoint_dir) or [-1])[-1]
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        steps = checkpoint.list_steps(checkpoint_dir)
        if steps and steps[-1] > before:
            return steps[-1]
        time.sleep(0.01)
    raise TimeoutError(f"no new checkpoint in {checkpoint_dir} within {timeout} s")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m spotkit.rehearsal.workload", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint-dir", required=True, type=Path)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--step-seconds", type=float, default=1.0)
    p.add_argument("--checkpoint-every", type=int, default=10)
    p.add_argument("--progress", type=Path)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--request-checkpoint", type=int, metavar="PID",
                   help="hook mode: ask the trainer PID for a checkpoint and wait until it is on disk")
    p.add_argument("--timeout", type=float, default=60.0, help="hook mode: seconds to wait")
    p.add_argument("--wait-for-final", type=float, metavar="SECONDS",
                   help="replacement mode: wait this long for the old instance's final checkpoint marker")
    args = p.parse_args(argv)
    if args.request_checkpoint:
        step = request_checkpoint(args.request_checkpoint, args.checkpoint_dir, args.timeout)
        print(json.dumps({"checkpoint_step": step}))
        return 0
    trainer = Trainer(TrainerConfig(checkpoint_dir=args.checkpoint_dir, steps=args.steps,
                                    step_seconds=args.step_seconds, checkpoint_every=args.checkpoint_every,
                                    progress=args.progress, seed=args.seed, wait_for_final=args.wait_for_final))
    signal.signal(signal.SIGUSR1, trainer.request_checkpoint)
    signal.signal(signal.SIGTERM, trainer.request_stop)
    try:
        trainer.run()
    except checkpoint.CheckpointDirError as exc:
        print(f"error: {exc.message}\n  next: {exc.hint}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
