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


class _Stretches:
    """The ticks at which some zone's room changes (the first tick counts as one), walked forward."""

    def __init__(self, capacity: np.ndarray):
        n = capacity.shape[1]
        changes = np.ones(n, dtype=bool)
        if n > 1:
            changes[1:] = np.any(capacity[:, 1:] != capacity[:, :-1], axis=0)
        self.change_at = np.flatnonzero(changes).tolist() + [n]
        self.next_idx = 0

    def until_change(self, t: int) -> int:
        """Ticks from ``t`` to the next change of room (or the trace's end)."""
        while self.change_at[self.next_idx] <= t:
            self.next_idx += 1
        return self.change_at[self.next_idx] - t


class _Fleet:
    """The state of one replay and its per-tick handlers (the numbered steps of the module doc): the
    spot group per zone, the on-demand instances, and the fallback's base of the spot group."""

    def __init__(self, policy: Policy, nz: int, gap: int):
        self.policy = policy
        self.nz = nz
        self.gap = gap
        self.boot = _ticks(policy.boot_seconds, gap)
        self.replace_boot = _ticks(policy.boot_seconds - policy.notice_seconds, gap)
        self.fbp = policy.fallback
        self.check_every = (self.fbp.check_every_minutes * 60) if self.fbp else 0
        self.ready = [0] * nz                                  # ready spot instances per zone
        self.pend: list[list[int]] = [[] for _ in range(nz)]   # ready ticks of pending spot launches per zone
        self.od_ready = 0
        self.od_pend: list[int] = []
        self.active = [True] * nz
        self.base = policy.spot_group_base        # the spot group's on-demand base (the fallback moves it)
        self.original = policy.spot_group_base
        self.in_fb = False
        self.changed_at = EPOCH
        self.failure_ticks: list[int] = []
        self.spot_ok_since_change = 0
        self.lost_now = 0
        self.next_check = 0
        self.preemptions = 0
        self.capacity_failures = 0         # ticks at which the spot group found no room for what it lacked
        self.fallback_episodes = 0

    def group_on_demand(self, base: int) -> int:
        """On-demand instances inside the spot group at ``base`` (its own base and percentage)."""
        d = self.policy.spot_group
        return min(d, base + math.ceil((d - base) * self.policy.spot_group_on_demand_percent / 100))

    def od_target(self, spot_ready: int, od_have: int, od_in_group: int, spot_wanted: int) -> int:
        policy = self.policy
        if policy.dynamic_on_demand:
            return policy.on_demand + max(0, policy.target - spot_ready)
        wanted = policy.on_demand + od_in_group
        # A lowered base replaces on-demand with spot, new before old: an on-demand instance stays while
        # the spot instance that replaces it is not ready.
        return min(max(wanted, od_have), wanted + max(0, spot_wanted - spot_ready))

    @property
    def od_billed(self) -> int:
        return self.od_ready + len(self.od_pend)

    def finish_boots(self, t: int) -> None:
        """1. launches whose boot time has passed become ready."""
        for z in range(self.nz):
            if self.pend[z]:
                self.ready[z] += _promote(self.pend[z], t)
        if self.od_pend:
            self.od_ready += _promote(self.od_pend, t)

    def preempt(self, cap: list[float]) -> None:
        """2. every zone holding more than its room loses the excess, pending launches first."""
        ready, pend = self.ready, self.pend
        lost_now = 0
        for z in range(self.nz):
            held = ready[z] + len(pend[z])
            if held > cap[z]:
                excess = int(held - cap[z])
                from_pend = min(excess, len(pend[z]))
                if from_pend:
                    pend[z].sort()
                    del pend[z][len(pend[z]) - from_pend:]
                ready[z] -= excess - from_pend
                lost_now += excess
                self.active[z] = False
        self.lost_now = lost_now
        self.preemptions += lost_now

    def return_check(self, t: int, now: datetime) -> None:
        """3. in fallback, at every ``check_every_minutes``: the handler's ``decide_return``."""
        fbp, gap = self.fbp, self.gap
        if not (fbp and self.in_fb and t * gap >= self.next_check):
            return
        while self.next_check <= t * gap:
            self.next_check += self.check_every
        recent = max(self.changed_at, now - timedelta(minutes=fbp.hold_minutes))
        recent_tick = (recent - EPOCH).total_seconds() / gap
        failures = len(self.failure_ticks) - bisect.bisect_left(self.failure_ticks, recent_tick)  # ticks ascend
        step = decide_return(base=self.base, original=self.original, now=now, changed=self.changed_at,
                             failures=failures, spot_launches=self.spot_ok_since_change, score=lambda: None,
                             policy=fbp)
        if step.target != self.base:
            self.base = step.target
            self.changed_at, self.spot_ok_since_change = now, 0
            if step.action == "restored":
                self.in_fb = False

    def match_on_demand(self, t: int, cap: list[float]) -> tuple[int, int]:
        """4. launch or stop on-demand instances to match the policy; return (on-demand in the spot group,
        spot instances wanted)."""
        d = self.policy.spot_group
        od_in_group = self.group_on_demand(self.base) if d else 0
        spot_wanted = d - od_in_group
        od_have = self.od_ready + len(self.od_pend)
        # at the start the spot fleet is placed where the trace has room, ready at once
        spot_now = sum(self.ready) if t else int(min(spot_wanted, sum(cap)))
        od_wanted = self.od_target(spot_now, od_have, od_in_group, spot_wanted)
        if od_have < od_wanted:
            self.od_pend.extend([t + (self.boot if t else 0)] * (od_wanted - od_have))
        elif od_have > od_wanted:
            drop = od_have - od_wanted
            from_pend = min(drop, len(self.od_pend))
            if from_pend:
                del self.od_pend[len(self.od_pend) - from_pend:]
            self.od_ready -= drop - from_pend
        return od_in_group, spot_wanted

    def launch_spot(self, t: int, cap: list[float], now: datetime, od_in_group: int, spot_wanted: int) -> int:
        """5. the spot group sheds its excess or launches what it lacks; return the on-demand in the group
        (raised when the fallback acts on a capacity failure)."""
        held = [self.ready[z] + len(self.pend[z]) for z in range(self.nz)]
        have = sum(held)
        if have > spot_wanted:
            self._shed(held, have - spot_wanted)
        elif have < spot_wanted and self._place(t, cap, held, spot_wanted - have):
            od_in_group = self._capacity_failure(t, now, held, od_in_group)
        return od_in_group

    def _shed(self, held: list[int], extra: int) -> None:
        for _ in range(extra):
            z = max(range(self.nz), key=lambda i: held[i])
            if self.pend[z]:
                self.pend[z].pop()
            else:
                self.ready[z] -= 1
            held[z] -= 1

    def _rooms(self, held: list[int], cap: list[float]) -> list[int]:
        """Zones with room; with ``avoid_preempted_zones`` only those not yet avoided (all again once every
        zone is)."""
        room = [z for z in range(self.nz) if held[z] < cap[z]]
        if not self.policy.avoid_preempted_zones:
            return room
        for z in range(self.nz):
            if self.active[z] and z not in room:
                self.active[z] = False
        pick = [z for z in room if self.active[z]]
        if not pick:
            self.active = [True] * self.nz
            pick = room
        return pick

    def _place(self, t: int, cap: list[float], held: list[int], need: int) -> int:
        """Launch up to ``need`` spot instances in the emptiest zones with room; return how many found none.
        Replacements of this tick's losses start at the notice."""
        credit = min(need, self.lost_now)
        while need:
            room = self._rooms(held, cap)
            if not room:
                break
            z = min(room, key=lambda i: held[i])
            self.pend[z].append(t + (self.replace_boot if credit else self.boot) if t else 0)
            credit = max(0, credit - 1)
            held[z] += 1
            need -= 1
            self.spot_ok_since_change += 1
        return need

    def _capacity_failure(self, t: int, now: datetime, held: list[int], od_in_group: int) -> int:
        """A capacity failure; with the fallback on, the handler's ``decide_fall_back`` may raise the base."""
        self.capacity_failures += 1
        self.failure_ticks.append(t)
        if not self.fbp:
            return od_in_group
        policy = self.policy
        on_demand_live = max(0, self.od_ready + len(self.od_pend) - policy.on_demand)  # the group's, pending too
        step = decide_fall_back(base=self.base, recorded=self.in_fb, desired=policy.spot_group,
                                live=sum(held) + on_demand_live, on_demand_live=on_demand_live, policy=self.fbp)
        if step.action != "raised":
            return od_in_group
        if not self.in_fb:
            self.fallback_episodes += 1
        self.in_fb = True
        self.base = step.target
        od_in_group = self.group_on_demand(self.base)
        more = policy.on_demand + od_in_group - self.od_ready - len(self.od_pend)
        self.od_pend.extend([t + self.boot] * max(0, more))
        self.changed_at, self.spot_ok_since_change = now, 0
        self.next_check = t * self.gap + self.check_every
        return od_in_group

    def settled_span(self, t: int, od_in_group: int, spot_wanted: int, stretches: _Stretches) -> int:
        """6. ticks from ``t`` the fleet stays as it is: up to the next change of room when it is settled
        (and, in fallback, up to the next return check), else 1. A failure at ``t`` repeats at each of them."""
        od_billed = self.od_billed
        if (self.od_pend or self.lost_now != 0 or any(self.pend)
                or od_billed != self.od_target(sum(self.ready), od_billed, od_in_group, spot_wanted)):
            return 1
        span = stretches.until_change(t)
        failing = bool(self.failure_ticks) and self.failure_ticks[-1] == t
        if self.in_fb and not failing:  # the next return check may change the base: stop there
            span = max(1, min(span, -(-self.next_check // self.gap) - t))
        if failing:  # the same failure at every tick of the stretch (in fallback: "still-failing", "kept")
            self.capacity_failures += span - 1
            self.failure_ticks.extend(range(t + 1, t + span))
        return span


class _Books:
    """The accounting: what each stretch of ticks costs and whether it had the target ready."""

    def __init__(self, policy: Policy, fleet: _Fleet, n: int, gap: int, keep_series: bool):
        self.policy = policy
        self.n = n
        self.gap = gap
        self.keep_series = keep_series
        self.ready_series = np.zeros(n, dtype=np.int32) if keep_series else None
        self.od_series = np.zeros(n, dtype=np.float32) if keep_series else None
        self.short_run = 0
        self.longest = 0
        self.short_ticks = 0
        self.cost_units = 0.0
        self.od_ticks = 0
        self.spot_ticks = 0
        self.fb_od_ticks = 0
        # on-demand that is not the fallback's: the provider's, and the spot group's own at the start
        self.od_in_group_at_start = fleet.group_on_demand(policy.spot_group_base)

    def add(self, fleet: _Fleet, t: int, span: int) -> None:
        """Count ``span`` ticks from ``t`` with the fleet as it is."""
        policy = self.policy
        spot_billed = sum(fleet.ready) + sum(len(p) for p in fleet.pend)
        od_billed = fleet.od_billed
        r = sum(fleet.ready) + fleet.od_ready
        if r < policy.target:
            self.short_ticks += span
            self.short_run += span
            self.longest = max(self.longest, self.short_run)
        else:
            self.short_run = 0
        self.cost_units += span * (od_billed + policy.spot_price_ratio * spot_billed)
        self.od_ticks += span * od_billed
        self.spot_ticks += span * spot_billed
        self.fb_od_ticks += span * max(0, od_billed - policy.on_demand
                                       - (0 if policy.dynamic_on_demand else self.od_in_group_at_start))
        if self.keep_series:
            self.ready_series[t:t + span] = r
            total = od_billed + spot_billed
            self.od_series[t:t + span] = (od_billed / total) if total else 0.0

    def result(self, fleet: _Fleet) -> Result:
        n, gap, hours = self.n, self.gap, self.gap / 3600.0
        res = Result(policy=self.policy.name, ticks=n, gap_seconds=gap)
        res.preemptions = fleet.preemptions
        res.capacity_failures = fleet.capacity_failures
        res.fallback_episodes = fleet.fallback_episodes
        res.availability = 1.0 - self.short_ticks / n
        res.longest_shortfall_minutes = self.longest * gap / 60
        res.shortfall_minutes = self.short_ticks * gap / 60
        res.cost_vs_on_demand = self.cost_units / (self.policy.target * n)
        res.on_demand_hours = self.od_ticks * hours
        res.spot_hours = self.spot_ticks * hours
        res.fallback_on_demand_hours = self.fb_od_ticks * hours
        res.ready = self.ready_series
        res.on_demand_share = self.od_series
        return res


def simulate(policy: Policy, capacity: np.ndarray, gap_seconds: int, *, keep_series: bool = True,
             coalesce: bool = True) -> Result:
    """Replay ``policy`` against ``capacity`` (zones x ticks room, ``inf`` unbounded, rows in
    ``policy.zones`` order) and measure it (see the module doc). ``coalesce=False`` steps every tick
    (the same result, slower: the bench's baseline and a test's reference)."""
    nz, n = capacity.shape
    if nz != len(policy.zones):
        raise ValueError(f"capacity has {nz} zones, the policy {len(policy.zones)}")
    gap = gap_seconds
    caps = capacity.T.tolist()
    stretches = _Stretches(capacity)
    fleet = _Fleet(policy, nz, gap)
    books = _Books(policy, fleet, n, gap, keep_series)
    t = 0
    while t < n:
        cap = caps[t]
        fleet.finish_boots(t)
        fleet.preempt(cap)
        now = EPOCH + timedelta(seconds=t * gap)
        fleet.return_check(t, now)
        od_in_group, spot_wanted = fleet.match_on_demand(t, cap)
        od_in_group = fleet.launch_spot(t, cap, now, od_in_group, spot_wanted)
        # launches that are ready at once: the fleet at the trace's start, and replacements whose boot
        # fits in the notice
        fleet.finish_boots(t)
        span = fleet.settled_span(t, od_in_group, spot_wanted, stretches) if coalesce else 1
        books.add(fleet, t, span)
        t += span
    return books.result(fleet)
