"""Atomic checkpoints: the newest good one is always loadable, even when the writer is killed.

A checkpoint is one ``.npz`` file written to a temporary name in the same directory, flushed and
fsynced, then renamed to ``ckpt-<step>.npz`` (rename is atomic on POSIX), and the directory is fsynced
so the rename itself survives a crash. Readers only look at final names, newest first, and fall back
to an older one if a file cannot be read (a disk that lost data, or a file copied in by hand).
Temporary files left by a killed writer are ignored, and removed by the next writer.

``prepare`` runs at a workload's start: a folder that cannot be created or written is a
``CheckpointDirError`` then, not at the first save minutes (or a reclaim) later.

Retention keeps the ``keep`` newest checkpoints; older ones are removed only after a newer one is
durable, and only files this module names (``ckpt-*.npz``) are ever touched.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from spotkit.errors import ToolkitError
from spotkit.processes import pid_alive

_FINAL = re.compile(r"^ckpt-(\d{9})\.npz$")
_TMP_PREFIX = ".ckpt-tmp-"
META_KEY = "__spotkit_meta__"


@dataclass(frozen=True)
class Checkpoint:
    step: int
    path: Path
    arrays: dict[str, np.ndarray]
    meta: dict


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class CheckpointDirError(ToolkitError):
    """The checkpoint folder cannot be created or written; the message names it and the reason."""


def prepare(directory: str | Path) -> Path:
    """Create ``directory`` if needed and prove a checkpoint can be written there (a temporary file is
    written, fsynced and removed, as ``save`` does). Raises ``CheckpointDirError``."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f"{_TMP_PREFIX}{os.getpid()}-probe-", dir=directory)
        try:
            os.write(fd, b"spotkit")
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(tmp_name)
    except OSError as exc:
        raise CheckpointDirError(
            f"checkpoints cannot be written in {directory}: {exc.strerror or exc}",
            hint=f"pass a checkpoint folder you can write to, e.g. --checkpoint-dir {Path.home() / 'checkpoints'}",
        ) from None
    return directory


def checkpoint_path(directory: Path, step: int) -> Path:
    return Path(directory) / f"ckpt-{step:09d}.npz"


def save(directory: str | Path, step: int, arrays: Mapping[str, np.ndarray], meta: Mapping | None = None,
         keep: int = 3) -> Path:
    """Write checkpoint ``step`` atomically; return its path. ``keep`` newest are retained (0 = all)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if step < 0:
        raise ValueError(f"step must be 0 or more, got {step}")
    payload = {k: np.asarray(v) for k, v in arrays.items()}
    if META_KEY in payload:
        raise ValueError(f"{META_KEY} is reserved")
    payload[META_KEY] = np.frombuffer(json.dumps({"step": step, **dict(meta or {})}).encode(), dtype=np.uint8)
    fd, tmp_name = tempfile.mkstemp(prefix=f"{_TMP_PREFIX}{os.getpid()}-", dir=directory)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **payload)
            fh.flush()
            os.fsync(fh.fileno())
        final = checkpoint_path(directory, step)
        os.replace(tmp, final)
        _fsync_dir(directory)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _clean(directory, keep)
    return final


def _clean(directory: Path, keep: int) -> None:
    for stale in directory.glob(f"{_TMP_PREFIX}*"):
        # Left by a killed writer. A live writer (another process sharing the directory) keeps its own.
        pid = stale.name[len(_TMP_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not pid_alive(int(pid)):
            stale.unlink(missing_ok=True)
    if keep > 0:
        for old in list_steps(directory)[:-keep]:
            checkpoint_path(directory, old).unlink(missing_ok=True)


def list_steps(directory: str | Path) -> list[int]:
    directory = Path(directory)
    if not directory.is_dir():
        return []
    steps = []
    for entry in directory.iterdir():
        m = _FINAL.match(entry.name)
        if m:
            steps.append(int(m.group(1)))
    return sorted(steps)


def load(path: str | Path) -> Checkpoint:
    path = Path(path)
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files if k != META_KEY}
        meta = json.loads(bytes(data[META_KEY]).decode())
    return Checkpoint(step=int(meta["step"]), path=path, arrays=arrays, meta=meta)


def latest(directory: str | Path) -> Checkpoint | None:
    """The newest checkpoint that loads, or None. Unreadable files are skipped (and left in place)."""
    for step in reversed(list_steps(directory)):
        try:
            return load(checkpoint_path(Path(directory), step))
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, json.JSONDecodeError):
            continue
    return None


# --- the hand-off marker ------------------------------------------------------------------------
# A workload that stops for a reclaim writes ``final.json`` (atomically, after its final checkpoint is
# durable): ``{"step": n, "checkpoint": "ckpt-....npz", "pid": writer, "t": epoch}``. A replacement that
# booted during the notice window waits for it and *claims* it by renaming it (atomic: of two
# replacements, one wins), so one final state is resumed once.

FINAL_MARKER = "final.json"
CLAIMED_MARKER = ".final-claimed.json"


def write_final_marker(directory: str | Path, step: int, *, pid: int | None = None) -> Path:
    """Announce that checkpoint ``step`` is this run's final state; returns the marker's path."""
    import time

    directory = Path(directory)
    doc = {"step": step, "checkpoint": checkpoint_path(directory, step).name, "pid": pid or os.getpid(),
           "t": time.time()}
    fd, tmp_name = tempfile.mkstemp(prefix=f"{_TMP_PREFIX}{os.getpid()}-marker-", dir=directory)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(doc, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_name, directory / FINAL_MARKER)
        _fsync_dir(directory)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return directory / FINAL_MARKER


def claim_final_marker(directory: str | Path) -> dict | None:
    """Take the final marker if there is one (rename, so only one claimer gets it); its content or None."""
    directory = Path(directory)
    claimed = directory / CLAIMED_MARKER
    try:
        os.rename(directory / FINAL_MARKER, claimed)
    except FileNotFoundError:
        return None
    try:
        return json.loads(claimed.read_text())
    except (OSError, ValueError):
        return None  # torn by hand: the caller falls back to the newest checkpoint


def wait_for_final_marker(directory: str | Path, timeout: float, poll: float = 0.01) -> dict | None:
    """Claim the final marker as soon as it appears; None after ``timeout`` seconds without one."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        found = claim_final_marker(directory)
        if found is not None or time.monotonic() >= deadline:
            return found
        time.sleep(poll)
