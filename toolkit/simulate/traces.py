"""Spot capacity traces: the format ``spotkit simulate`` reads, and its reader.

A trace is a directory of JSON files, one per availability zone, in the format of
``skypilot-org/spot-traces`` (the traces of "Can't Be Late", NSDI 2024, and SkyServe/SpotHedge)::

    us-west-2a_v100_1.json     <zone>_<label>.json; the zone is the name up to the first "_"
    {"metadata": {"gap_seconds": 300}, "data": [0, 3, 16, 16, ...]}

- ``metadata.gap_seconds``: seconds between two ticks, above 0, the same in every file of the directory.
- ``data``: one whole number per tick, 0 or more: how many spot instances the probe held (or could
  launch) in that zone at that tick.
- ``metadata.probe_size`` (optional): how many instances the probe asked for. Default: the largest
  value in ``data`` (1 for the single-node traces, 16 for the 16-node ones).

A value equal to the probe size means the probe got all it asked for: the simulator treats the zone as
having room for any number of instances at that tick (the trace says nothing about more). A smaller
value is the room left: a group holding more there loses the excess (a preemption).

Files of one directory may differ in length: the simulation runs over the shortest (the report says
so). Several files for one zone are an error (keep one, or pass another directory).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spotkit.errors import ToolkitError

FORMAT_HINT = ('each file is <zone>_<label>.json holding {"metadata": {"gap_seconds": 300}, "data": [0, 1, ...]} '
               "(the skypilot-org/spot-traces format; see docs/simulate.md)")
UNBOUNDED = math.inf


class TraceError(ToolkitError):
    """A trace directory or file is not in the documented format."""


@dataclass
class ZoneTrace:
    zone: str
    label: str
    path: str
    values: np.ndarray   # int64, one per tick
    probe_size: int

    def capacity(self) -> np.ndarray:
        """Room per tick as float64: the value, or ``inf`` where the probe got all it asked for."""
        cap = self.values.astype(np.float64)
        cap[self.values >= self.probe_size] = UNBOUNDED
        return cap


@dataclass
class TraceSet:
    name: str
    path: str
    gap_seconds: int
    zones: dict[str, ZoneTrace] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def ticks(self) -> int:
        return min(len(z.values) for z in self.zones.values())

    @property
    def days(self) -> float:
        return self.ticks * self.gap_seconds / 86400

    def capacity(self, zones: list[str]) -> np.ndarray:
        """A (len(zones), ticks) float64 array of room per zone and tick (``inf``: unbounded)."""
        n = self.ticks
        return np.stack([self.zones[z].capacity()[:n] for z in zones]) if zones else np.zeros((0, n))


def _fail(path: Path, what: str) -> TraceError:
    return TraceError(f"trace {path}: {what}", hint=FORMAT_HINT)


def read_zone_file(path: Path) -> tuple[int, ZoneTrace]:
    """Read one ``<zone>_<label>.json``; return (gap_seconds, trace)."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _fail(path, f"is not JSON ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("metadata"), dict) or "data" not in doc:
        raise _fail(path, 'has no "metadata" object and "data" list')
    gap = doc["metadata"].get("gap_seconds")
    if isinstance(gap, bool) or not isinstance(gap, (int, float)) or gap != int(gap):
        raise _fail(path, f"metadata.gap_seconds must be a whole number of seconds (got {gap!r})")
    if gap <= 0:
        raise TraceError(f"trace {path}: ticks of zero length (metadata.gap_seconds is {gap}); it must be above 0",
                         hint=f"set metadata.gap_seconds to the seconds between two samples (e.g. 300) in {path}")
    data = doc["data"]
    if not isinstance(data, list) or not data:
        raise _fail(path, '"data" must be a non-empty list of whole numbers')
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in data):
        bad = next(v for v in data if not (isinstance(v, int) and not isinstance(v, bool) and v >= 0))
        raise _fail(path, f'"data" holds {bad!r}: each tick must be a whole number of instances, 0 or more')
    values = np.asarray(data, dtype=np.int64)
    probe = doc["metadata"].get("probe_size", int(values.max()))
    if isinstance(probe, bool) or not isinstance(probe, int) or probe < 1:
        probe = max(1, int(values.max()))
    zone, _, label = path.stem.partition("_")
    return int(gap), ZoneTrace(zone=zone, label=label, path=str(path), values=values, probe_size=int(probe))


def load_trace_dir(path: str | Path) -> TraceSet:
    """Read a trace directory (see the module doc); raise ``TraceError`` with the fix on a bad one."""
    p = Path(path)
    if not p.is_dir():
        raise TraceError(f"trace {p} is not a directory",
                         hint="pass --trace with a directory of <zone>_<label>.json files, e.g. "
                              "--trace tests/fixtures/traces/aws-v100-16node-2023-08")
    files = sorted(f for f in p.iterdir() if f.suffix == ".json" and f.is_file())
    if not files:
        raise TraceError(f"trace {p} holds no .json file", hint=FORMAT_HINT)
    traces = TraceSet(name=p.name, path=str(p), gap_seconds=0)
    for f in files:
        gap, zt = read_zone_file(f)
        if traces.gap_seconds and gap != traces.gap_seconds:
            raise TraceError(f"trace {p}: {f.name} has ticks of {gap} s, the other files {traces.gap_seconds} s",
                             hint="keep files of one tick length in a directory (one directory per trace)")
        traces.gap_seconds = gap
        if zt.zone in traces.zones:
            other = Path(traces.zones[zt.zone].path).name
            raise TraceError(f"trace {p}: two files for zone {zt.zone} ({other}, {f.name})",
                             hint=f"keep one file per zone: move {f.name} to its own directory")
        traces.zones[zt.zone] = zt
    lengths = {len(z.values) for z in traces.zones.values()}
    if len(lengths) > 1:
        traces.notes.append(f"files differ in length ({min(lengths)}-{max(lengths)} ticks): "
                            f"simulated over the first {min(lengths)}")
    return traces
