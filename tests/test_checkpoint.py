"""Atomic checkpoints and the training workload that uses them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from spotkit.rehearsal import checkpoint
from spotkit.rehearsal.workload import Trainer, TrainerConfig

ROOT = Path(__file__).resolve().parents[1]

WRITER = r"""
import sys, numpy as np
from spotkit.rehearsal import checkpoint
d = sys.argv[1]
found = checkpoint.latest(d)
step = found.step if found else 0            # resume: each run's saves are newer than the last run's
big = np.arange(400_000, dtype=np.float64)   # ~3 MB per file: a kill lands mid-write often
while True:
    step += 1
    checkpoint.save(d, step, {"w": big + step}, {"note": "kill test"}, keep=2)
    print(step, flush=True)                   # the test waits for this before a kill counts
"""


def test_save_then_latest_round_trips(tmp_path):
    checkpoint.save(tmp_path, 3, {"w": np.ones(3)}, {"reason": "x"})
    checkpoint.save(tmp_path, 7, {"w": np.full(3, 7.0)})
    found = checkpoint.latest(tmp_path)
    assert found.step == 7
    assert found.arrays["w"].tolist() == [7.0, 7.0, 7.0]
    assert found.path.name == "ckpt-000000007.npz"


def test_retention_keeps_newest(tmp_path):
    for step in range(1, 6):
        checkpoint.save(tmp_path, step, {"w": np.zeros(1)}, keep=2)
    assert checkpoint.list_steps(tmp_path) == [4, 5]


def test_corrupt_newest_falls_back_to_previous(tmp_path):
    checkpoint.save(tmp_path, 1, {"w": np.ones(2)}, keep=0)
    checkpoint.save(tmp_path, 2, {"w": np.ones(2) * 2}, keep=0)
    checkpoint.checkpoint_path(tmp_path, 2).write_bytes(b"truncated")
    found = checkpoint.latest(tmp_path)
    assert found.step == 1
    assert checkpoint.checkpoint_path(tmp_path, 2).exists(), "an unreadable file is skipped, never deleted"


def test_empty_or_missing_directory(tmp_path):
    assert checkpoint.latest(tmp_path / "nope") is None
    assert checkpoint.latest(tmp_path) is None


@pytest.mark.slow  # kills a writer at many random points: seconds
def test_writer_killed_at_random_points_leaves_a_loadable_newest(tmp_path):
    # GIVEN a writer saving 3 MB checkpoints in a loop, WHEN it is SIGKILLed at 25 random moments,
    # each after the writer's first save of that run (so a slow start on a loaded machine cannot make
    # a kill land before anything was written: the condition is waited for, not a duration)
    rng = np.random.default_rng(1234)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    highest_seen = 0
    for _ in range(25):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], env=env,
                                stdout=subprocess.PIPE, text=True)
        first = proc.stdout.readline()          # blocks until the first save of this run completed
        assert first.strip().isdigit(), f"the writer exited before its first save (rc={proc.poll()})"
        assert int(first) > highest_seen, "each run saves newer steps than the one before"
        time.sleep(float(rng.uniform(0.0, 0.4)))   # a random point in the following saves
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        # THEN the newest final checkpoint always loads, with the array it claims
        found = checkpoint.latest(tmp_path)
        assert found is not None
        assert found.arrays["w"][0] == found.step
        assert checkpoint.list_steps(tmp_path)[-1] == found.step, "the newest file is never a torn write"
        assert found.step >= int(first), "a completed save is never lost to a later kill"
        highest_seen = max(highest_seen, found.step)
    assert highest_seen >= 25


def test_resumed_run_matches_uninterrupted_run(tmp_path):
    # GIVEN one run to 12 steps, and another stopped at 5 then resumed
    straight = Trainer(TrainerConfig(checkpoint_dir=tmp_path / "a", steps=12, step_seconds=0, checkpoint_every=4))
    assert straight.run() == 12
    first = Trainer(TrainerConfig(checkpoint_dir=tmp_path / "b", steps=5, step_seconds=0, checkpoint_every=100))
    first.run()
    resumed = Trainer(TrainerConfig(checkpoint_dir=tmp_path / "b", steps=12, step_seconds=0, checkpoint_every=4))
    assert resumed.run() == 12
    # THEN both end at the same weights
    a, b = checkpoint.latest(tmp_path / "a"), checkpoint.latest(tmp_path / "b")
    for key in a.arrays:
        np.testing.assert_allclose(a.arrays[key], b.arrays[key])


def test_sigterm_checkpoints_the_current_step_and_exits(tmp_path):
    progress = tmp_path / "progress.jsonl"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "spotkit.rehearsal.workload", "--checkpoint-dir", str(tmp_path / "c"),
                             "--steps", "1000", "--step-seconds", "0.05", "--checkpoint-every", "1000",
                             "--progress", str(progress)], env=env)
    deadline = time.time() + 30
    while time.time() < deadline:
        if progress.exists() and sum(1 for line in progress.read_text().splitlines() if '"step"' in line) > 5:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    events = [json.loads(line) for line in progress.read_text().splitlines()]
    last_step = max(e["step"] for e in events if e["event"] == "step")
    # THEN no step was lost: the checkpoint holds the last completed step
    assert checkpoint.latest(tmp_path / "c").step == last_step
    assert events[-1]["event"] == "exit" and events[-1]["preempted"] is True


def test_an_unwritable_checkpoint_dir_is_found_at_start_not_at_the_first_save(tmp_path):
    # GIVEN a checkpoint folder that cannot be created (its parent is a file; as root, modes cannot stop a write)
    (tmp_path / "a-file").write_text("")
    folder = tmp_path / "a-file" / "ckpt"
    progress = tmp_path / "progress.jsonl"
    # WHEN the workload starts THEN it stops before its first step, saying why, with exit 1 and no traceback
    done = subprocess.run([sys.executable, "-m", "spotkit.rehearsal.workload", "--checkpoint-dir", str(folder), "--steps", "50",
                           "--step-seconds", "0.01", "--checkpoint-every", "40", "--progress", str(progress)],
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 1, done.stderr
    assert f"error: checkpoints cannot be written in {folder}: Not a directory" in done.stderr
    assert "next: pass a checkpoint folder you can write to" in done.stderr and "Traceback" not in done.stderr
    steps = [json.loads(line) for line in progress.read_text().splitlines()] if progress.exists() else []
    assert not [e for e in steps if e["event"] == "step"], "no step ran before the error"


def test_prepare_leaves_no_probe_behind(tmp_path):
    checkpoint.prepare(tmp_path / "new" / "ckpt")
    assert list((tmp_path / "new" / "ckpt").iterdir()) == []
