"""The tick-by-tick replay of a capacity policy against a trace.

Each tick (the trace's ``gap_seconds``), in this order:

1. launches whose boot time has passed become ready;
2. every zone holding more spot instances than the trace has room for loses the excess (a
   preemption; pending launches go first);
3. in fallback, at every ``check_every_minutes``, the return check runs: ``decide_return`` of
   ``toolkit/runtime/interruption/fallback.py``, the code the handler runs (no placement score: the check
   steps down once ``hold_minutes`` pass without a capacity failure);
4. on-demand instances are launched or stopped to match the policy (they always launch);
5. the spot group launches what it lacks in the zones with room, the emptiest zone first; what finds
   no room is a capacity failure, and with the fallback on the handler's ``decide_fall_back`` raises
   the group's on-demand base by the shortfall (bounded by the ceiling).

A launch is ready ``boot_seconds`` later, rounded up to whole ticks; a replacement of a preempted
instance starts at the two-minute notice, so it is ready ``boot_seconds - notice_seconds`` after the
loss. Instances are billed from launch; spot at ``spot_price_ratio`` of the on-demand price.

The engine is a plain loop over ticks (no AWS, no clock); stretches where no zone's room changes and
the fleet is settled (and, in fallback, no return check can act) are added up at once.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Optional

import numpy as np

from spotkit.runtime.interruption.fallback import FallbackPolicy, decide_fall_back, decide_return
from spotkit.runtime.notice import SPOT_NOTICE_SECONDS

EPOCH = datetime(2000, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True)
class Policy:
    """A capacity policy, as the simulator runs it.

    - ``target``: replicas that must be ready (availability counts ticks with at least this many).
    - ``on_demand``: instances always on on-demand outside the spot group (the on-demand provider).
    - ``spot_group``: the spot group's desired capacity (0: no spot group).
    - ``spot_group_base`` / ``spot_group_on_demand_percent``: the spot group's own split (normally 0 / 0).
    - ``zones``: the trace zones the spot group launches in.
    - ``fallback``: the handler's fallback settings, or None (off: a shortfall stays a shortfall).
    - ``dynamic_on_demand``: SpotHedge's fallback: on-demand instances = target - ready spot, at once.
    - ``avoid_preempted_zones``: SpotHedge's placement: a zone that just preempted or failed a launch
      is skipped until every zone has.
    - ``boot_seconds``, ``notice_seconds``, ``spot_price_ratio``: see the module doc.
    """

    name: str
    target: int
    on_demand: int = 0
    spot_group: int = 0
    spot_group_base: int = 0
    spot_group_on_demand_percent: int = 0
    zones: tuple[str, ...] = ()
    fallback: Optional[FallbackPolicy] = None
    dynamic_on_demand: bool = False
    avoid_preempted_zones: bool = False
    boot_seconds: int = 300
    notice_seconds: int = SPOT_NOTICE_SECONDS
    spot_price_ratio: float = 0.35
    description: str = ""


@dataclass
class Result:
    policy: str
    ticks: int
    gap_seconds: int
    cost_vs_on_demand: float = 0.0     # cost / (target replicas on on-demand for the whole trace)
    availability: float = 0.0          # fraction of ticks with >= target ready
    longest_shortfall_minutes: float = 0.0
    shortfall_minutes: float = 0.0
    preemptions: int = 0
    capacity_failures: int = 0         # ticks at which the spot group found no room for what it lacked
    fallback_episodes: int = 0
    fallback_on_demand_hours: float = 0.0
    on_demand_hours: float = 0.0
    spot_hours: float = 0.0
    ready: Optional[np.ndarray] = field(default=None, repr=False)           # per tick
    on_demand_share: Optional[np.ndarray] = field(default=None, repr=False)  # per tick, of billed instances

    @property
    def saving(self) -> float:
        return 1.0 - self.cost_vs_on_demand

    def summary(self) -> dict:
        return {"policy": self.policy, "cost_vs_on_demand": round(self.cost_vs_on_demand, 4),
                "saving": round(self.saving, 4), "availability": round(self.availability, 6),
                "longest_shortfall_minutes": round(self.longest_shortfall_minutes, 1),
                "shortfall_minutes": round(self.shortfall_minutes, 1), "preemptions": self.preemptions,
                "capacity_failures": self.capacity_failures, "fallback_episodes": self.fallback_episodes,
                "fallback_on_demand_hours": round(self.fallback_on_demand_hours, 2),
                "on_demand_hours": round(self.on_demand_hours, 2), "spot_hours": round(self.spot_hours, 2)}


def _ticks(seconds: float, gap: int) -> int:
    return max(0, math.ceil(seconds / gap))


def _promote(pending: list[int], t: int) -> int:
    """Remove the launches of ``pending`` (ready ticks) that are ready at ``t``; return how many."""
    keep = [r for r in pending if r > t]
    done = len(pending) - len(keep)
    if done:
        pending[:] = keep
    return done


def simulate(policy: Policy, capacity: np.ndarray, gap_seconds: int, *, keep_series: bool = True,
             coalesce: bool = True) -> Result:
    """Replay ``policy`` against ``capacity`` (zones x ticks room, ``inf`` unbounded, rows in
    ``policy.zones`` order) and measure it (see the module doc). ``coalesce=False`` steps every tick
    (the same result, slower: the bench's baseline and a test's reference)."""
    nz, n = capacity.shape
    if nz != len(policy.zones):
        raise ValueError(f"capacity has {nz} zones, the policy {len(policy.zones)}")
    gap = gap_seconds
    boot = _ticks(policy.boot_seconds, gap)
    replace_boot = _ticks(policy.boot_seconds - policy.notice_seconds, gap)
    fbp = policy.fallback
    check_every = (fbp.check_every_minutes * 60) if fbp else 0
    caps = capacity.T.tolist()
    changes = np.ones(n, dtype=bool)
    if n > 1:
        changes[1:] = np.any(capacity[:, 1:] != capacity[:, :-1], axis=0)
    change_at = np.flatnonzero(changes).tolist() + [n]
    next_change_idx = 0

    ready = [0] * nz                     # ready spot instances per zone
    pend: list[list[int]] = [[] for _ in range(nz)]   # ready ticks of pending spot launches per zone
    od_ready = 0
    od_pend: list[int] = []
    active = [True] * nz
    base = policy.spot_group_base        # the spot group's on-demand base (the fallback moves it)
    original = policy.spot_group_base
    in_fb = False
    changed_at = EPOCH
    failure_ticks: list[int] = []
    spot_ok_since_change = 0
    lost_now = 0
    next_check = 0

    res = Result(policy=policy.name, ticks=n, gap_seconds=gap)
    ready_series = np.zeros(n, dtype=np.int32) if keep_series else None
    od_series = np.zeros(n, dtype=np.float32) if keep_series else None
    short_run = 0
    longest = 0
    short_ticks = 0
    cost_units = 0.0
    od_ticks = 0
    spot_ticks = 0
    fb_od_ticks = 0
    hours = gap / 3600.0
    ratio = policy.spot_price_ratio
    target = policy.target
    d0 = policy.spot_group
    od_in_group_at_start = min(d0, original + math.ceil((d0 - original) * policy.spot_group_on_demand_percent / 100))

    def od_target(spot_ready: int, od_have: int, od_in_group: int, spot_wanted: int) -> int:
        if policy.dynamic_on_demand:
            return policy.on_demand + max(0, target - spot_ready)
        wanted = policy.on_demand + od_in_group
        # A lowered base replaces on-demand with spot, new before old: an on-demand instance stays while
        # the spot instance that replaces it is not ready.
        return min(max(wanted, od_have), wanted + max(0, spot_wanted - spot_ready))

    t = 0
    while t < n:
        cap = caps[t]
        # 1. boots that finished
        for z in range(nz):
            if pend[z]:
                ready[z] += _promote(pend[z], t)
        if od_pend:
            od_ready += _promote(od_pend, t)
        # 2. preemptions
        lost_now = 0
        for z in range(nz):
            held = ready[z] + len(pend[z])
            if held > cap[z]:
                excess = int(held - cap[z])
                from_pend = min(excess, len(pend[z]))
                if from_pend:
                    pend[z].sort()
                    del pend[z][len(pend[z]) - from_pend:]
                ready[z] -= excess - from_pend
                lost_now += excess
                active[z] = False
        res.preemptions += lost_now
        now = EPOCH + timedelta(seconds=t * gap)
        # 3. the return check
        if fbp and in_fb and t * gap >= next_check:
            while next_check <= t * gap:
                next_check += check_every
            recent = max(changed_at, now - timedelta(minutes=fbp.hold_minutes))
            recent_tick = (recent - EPOCH).total_seconds() / gap
            failures = len(failure_ticks) - bisect.bisect_left(failure_ticks, recent_tick)  # ticks ascend
            step = decide_return(base=base, original=original, now=now, changed=changed_at, failures=failures,
                                 spot_launches=spot_ok_since_change, score=lambda: None, policy=fbp)
            if step.target != base:
                base = step.target
                changed_at, spot_ok_since_change = now, 0
                if step.action == "restored":
                    in_fb = False
        # 4. on-demand instances
        d = policy.spot_group
        od_in_group = min(d, base + math.ceil((d - base) * policy.spot_group_on_demand_percent / 100)) if d else 0
        spot_wanted = d - od_in_group
        od_have = od_ready + len(od_pend)
        # at the start the spot fleet is placed where the trace has room, ready at once
        spot_now = sum(ready) if t else int(min(spot_wanted, sum(cap)))
        od_wanted = od_target(spot_now, od_have, od_in_group, spot_wanted)
        if od_have < od_wanted:
            od_pend.extend([t + (boot if t else 0)] * (od_wanted - od_have))
        elif od_have > od_wanted:
            drop = od_have - od_wanted
            from_pend = min(drop, len(od_pend))
            if from_pend:
                del od_pend[len(od_pend) - from_pend:]
            od_ready -= drop - from_pend
        # 5. spot launches
        held = [ready[z] + len(pend[z]) for z in range(nz)]
        have = sum(held)
        if have > spot_wanted:
            for _ in range(have - spot_wanted):
                z = max(range(nz), key=lambda i: held[i])
                if pend[z]:
                    pend[z].pop()
                else:
                    ready[z] -= 1
                held[z] -= 1
        elif have < spot_wanted:
            need = spot_wanted - have
            credit = min(need, lost_now)
            while need:
                room = [z for z in range(nz) if held[z] < cap[z]]
                if policy.avoid_preempted_zones:
                    for z in range(nz):
                        if active[z] and z not in room:
                            active[z] = False
                    pick = [z for z in room if active[z]]
                    if not pick:
                        active = [True] * nz
                        pick = room
                    room = pick
                if not room:
                    break
                z = min(room, key=lambda i: held[i])
                pend[z].append(t + (replace_boot if credit else boot) if t else 0)
                credit = max(0, credit - 1)
                held[z] += 1
                need -= 1
                spot_ok_since_change += 1
            if need:
                res.capacity_failures += 1
                failure_ticks.append(t)
                if fbp:
                    live = sum(held) + od_ready + len(od_pend) - policy.on_demand
                    step = decide_fall_back(base=base, original=original, recorded=in_fb, desired=d, live=live,
                                            policy=fbp)
                    if step.action == "raised":
                        if not in_fb:
                            res.fallback_episodes += 1
                        in_fb = True
                        base = step.target
                        od_in_group = min(d, base + math.ceil((d - base) * policy.spot_group_on_demand_percent / 100))
                        more = policy.on_demand + od_in_group - od_ready - len(od_pend)
                        od_pend.extend([t + boot] * max(0, more))
                        changed_at, spot_ok_since_change = now, 0
                        next_check = t * gap + check_every
        # metrics of this tick (launches that are ready at once: the fleet at the trace's start, and
        # replacements whose boot fits in the notice)
        for z in range(nz):
            if pend[z]:
                ready[z] += _promote(pend[z], t)
        if od_pend:
            od_ready += _promote(od_pend, t)
        spot_billed = sum(ready) + sum(len(p) for p in pend)
        od_billed = od_ready + len(od_pend)
        r = sum(ready) + od_ready
        # 6. a settled fleet over a stretch where no zone's room changes: count the stretch at once
        span = 1
        if (coalesce and not od_pend and lost_now == 0 and not any(pend)
                and od_billed == od_target(sum(ready), od_billed, od_in_group, spot_wanted)):
            while change_at[next_change_idx] <= t:
                next_change_idx += 1
            span = change_at[next_change_idx] - t
            failing = bool(failure_ticks) and failure_ticks[-1] == t
            if in_fb and not failing:  # the next return check may change the base: stop there
                span = max(1, min(span, -(-next_check // gap) - t))
            if failing:  # the same failure at every tick of the stretch (in fallback: "still-failing", "kept")
                res.capacity_failures += span - 1
                failure_ticks.extend(range(t + 1, t + span))
        if r < target:
            short_ticks += span
            short_run += span
            longest = max(longest, short_run)
        else:
            short_run = 0
        cost_units += span * (od_billed + ratio * spot_billed)
        od_ticks += span * od_billed
        spot_ticks += span * spot_billed
        fb_od_ticks += span * max(0, od_billed - policy.on_demand - (0 if policy.dynamic_on_demand else od_in_group_at_start))
        if keep_series:
            ready_series[t:t + span] = r
            total = od_billed + spot_billed
            od_series[t:t + span] = (od_billed / total) if total else 0.0
        t += span

    res.availability = 1.0 - short_ticks / n
    res.longest_shortfall_minutes = longest * gap / 60
    res.shortfall_minutes = short_ticks * gap / 60
    res.cost_vs_on_demand = cost_units / (target * n)
    res.on_demand_hours = od_ticks * hours
    res.spot_hours = spot_ticks * hours
    res.fallback_on_demand_hours = fb_od_ticks * hours
    res.ready = ready_series
    res.on_demand_share = od_series
    return res
