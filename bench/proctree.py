"""Run a command and measure wall time and the peak resident memory of its whole process tree
(the Python process and the jsii Node.js child it starts), sampled from /proc."""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass


@dataclass
class RunStats:
    seconds: float
    peak_rss_mib: float          # the whole process tree, summed at its peak
    returncode: int
    peak_largest_mib: float = 0.0  # the largest single process (Python, or jsii's Node.js) at its peak


def _children(pid: int) -> list[int]:
    kids = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                kids.extend(int(c) for c in fh.read().split())
    except OSError:
        pass
    return kids


def _rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_rss(root: int) -> tuple[int, int]:
    """(sum, largest) resident KiB over the process tree of ``root``."""
    total, largest, stack, seen = 0, 0, [root], set()
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        rss = _rss_kib(pid)
        total += rss
        largest = max(largest, rss)
        stack.extend(_children(pid))
    return total, largest


def tree_rss_kib(root: int) -> int:
    return tree_rss(root)[0]


def measure(cmd: list[str], env: dict | None = None, cwd: str | None = None, interval: float = 0.02) -> RunStats:
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = largest = 0
    while proc.poll() is None:
        total, biggest = tree_rss(proc.pid)
        peak, largest = max(peak, total), max(largest, biggest)
        time.sleep(interval)
    seconds = time.perf_counter() - start
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err[-2000:]}")
    return RunStats(seconds=seconds, peak_rss_mib=peak / 1024, returncode=proc.returncode,
                    peak_largest_mib=largest / 1024)
