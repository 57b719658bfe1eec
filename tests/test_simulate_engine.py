"""The simulator on hand-made traces whose answer is known: exact figures, no timings."""

from __future__ import annotations

import math

import numpy as np
import pytest

from spotkit.runtime.interruption.fallback import FallbackPolicy
from spotkit.simulate.engine import Policy, simulate

INF = math.inf
DAY = 288  # 5-minute ticks


def room(zones: int, ticks: int = DAY, value: float = INF) -> np.ndarray:
    return np.full((zones, ticks), value)


def od_and_spot(**kw) -> Policy:
    """2 replicas, 1 on the on-demand provider, 1 spot, 2 AZs, fallback on: cost and shortfall easy to reckon."""
    args = dict(name="stack", target=2, on_demand=1, spot_group=1, zones=("a", "b"), fallback=FallbackPolicy(),
                spot_price_ratio=0.4)
    args.update(kw)
    return Policy(**args)


def test_capacity_always_there_costs_the_split_and_never_falls_short():
    # GIVEN room everywhere WHEN one on-demand + one spot replica runs a day
    r = simulate(od_and_spot(), room(2), 300)
    # THEN 1 on-demand + 1 spot at 0.4: (1 + 0.4) / 2 of all on-demand, always available
    assert r.cost_vs_on_demand == pytest.approx(0.7)
    assert r.availability == 1.0
    assert r.longest_shortfall_minutes == 0
    assert (r.preemptions, r.capacity_failures, r.fallback_episodes) == (0, 0, 0)
    assert r.on_demand_hours == pytest.approx(24) and r.spot_hours == pytest.approx(24)


def test_no_capacity_ever_with_the_fallback_runs_on_on_demand_after_one_boot():
    # GIVEN no spot room at all WHEN one on-demand + one spot replica (fallback on) runs a day
    r = simulate(od_and_spot(), room(2, value=0), 300)
    # THEN the first failure raises the base once; the on-demand replacement boots in one tick (300 s),
    # the only shortfall; it is never returned (the on-demand instance stays until spot can replace it)
    assert r.fallback_episodes == 1
    assert r.shortfall_minutes == 5 and r.longest_shortfall_minutes == 5
    assert r.cost_vs_on_demand == pytest.approx(1.0)  # 2 on-demand billed every tick, booting ones too
    assert r.spot_hours == 0
    assert r.fallback_on_demand_hours == pytest.approx(24)


def test_no_capacity_ever_without_the_fallback_is_short_the_whole_time():
    r = simulate(od_and_spot(fallback=None), room(2, value=0), 300)
    assert r.availability == 0.0
    assert r.longest_shortfall_minutes == 24 * 60
    assert r.capacity_failures == DAY
    assert r.cost_vs_on_demand == pytest.approx(0.5)   # the on-demand replica only


def test_one_outage_of_known_length_in_the_only_zone():
    # GIVEN 2 spot replicas in one zone and a 60-minute outage (ticks 100-111)
    cap = room(1)
    cap[0, 100:112] = 0
    r = simulate(Policy("one", target=2, spot_group=2, zones=("a",), spot_price_ratio=0.5), cap, 300)
    # THEN both are preempted; nothing is back before the outage ends plus one boot: 13 ticks short
    assert r.preemptions == 2
    assert r.longest_shortfall_minutes == 65
    assert r.availability == pytest.approx(1 - 13 / DAY)
    assert r.capacity_failures == 12
    # billed: 2 spot for all ticks but the 12 of the outage (the relaunch bills while it boots)
    assert r.cost_vs_on_demand == pytest.approx(0.5 * 2 * (DAY - 12) / (2 * DAY))


def test_one_outage_with_the_fallback_is_short_for_one_boot_and_returns_after_the_hold():
    cap = room(1)
    cap[0, 100:112] = 0
    fb = FallbackPolicy(max_on_demand_base=2, hold_minutes=30, check_every_minutes=10)
    r = simulate(Policy("one", target=2, spot_group=2, zones=("a",), fallback=fb), cap, 300)
    # THEN the handler raises the base to 2 at the first failure: one tick short (the on-demand boot)
    assert r.longest_shortfall_minutes == 5
    assert r.fallback_episodes == 1
    assert r.preemptions == 2


def test_the_fallback_ceiling_bounds_the_on_demand_it_adds():
    # GIVEN 4 spot replicas, no room, a ceiling of 2 WHEN it runs
    fb = FallbackPolicy(max_on_demand_base=2)
    r = simulate(Policy("c", target=4, spot_group=4, zones=("a", "b"), fallback=fb), room(2, value=0), 300)
    # THEN at most 2 on-demand: the group is short the whole day (2 of 4 ready)
    assert r.availability == 0.0
    assert r.on_demand_hours == pytest.approx(2 * 24)


def test_a_zone_outage_is_covered_by_the_other_zone():
    # GIVEN 2 spot replicas over 2 zones, zone a out for an hour
    cap = room(2)
    cap[0, 100:112] = 0
    r = simulate(Policy("two", target=2, spot_group=2, zones=("a", "b"), boot_seconds=420), cap, 300)
    # THEN one is preempted and relaunched in b: the replacement starts at the notice, ready in
    # ceil((420 - 120) / 300) = 1 tick
    assert r.preemptions == 1
    assert r.longest_shortfall_minutes == 5


def test_spothedge_overprovision_rides_out_a_zone_outage():
    cap = room(2)
    cap[0, 100:112] = 0
    p = Policy("hedge", target=2, spot_group=4, zones=("a", "b"), dynamic_on_demand=True, avoid_preempted_zones=True)
    r = simulate(p, cap, 300)
    # THEN losing zone a's 2 of 4 leaves 2 ready: never short, and no on-demand was needed
    assert r.preemptions == 2
    assert r.availability == 1.0
    assert r.on_demand_hours == 0


def test_spothedge_falls_back_to_on_demand_when_spot_is_gone_everywhere():
    p = Policy("hedge", target=2, spot_group=3, zones=("a",), dynamic_on_demand=True)
    r = simulate(p, room(1, value=0), 300)
    # THEN on-demand covers the target from the start (the fleet starts where there is room)
    assert r.availability == 1.0
    assert r.on_demand_hours == pytest.approx(2 * 24)


def test_a_partial_room_preempts_only_the_excess():
    # GIVEN room for 1 instance in the zone from tick 10
    cap = room(1)
    cap[0, 10:] = 1
    r = simulate(Policy("p", target=3, spot_group=3, zones=("a",)), cap, 300)
    assert r.preemptions == 2
    assert r.availability == pytest.approx(10 / DAY)


@pytest.mark.parametrize("trace", ["aws-v100-16node-2023-08", "aws-cpu-1node-2023-04"])
def test_coalescing_settled_stretches_changes_no_figure(trace):
    # GIVEN a real trace WHEN each policy runs stepping every tick and coalescing settled stretches
    from pathlib import Path

    from spotkit.simulate.traces import load_trace_dir

    ts = load_trace_dir(Path(__file__).parent / "fixtures" / "traces" / trace)
    zones = sorted(ts.zones)
    policies = [od_and_spot(zones=tuple(zones[:2])),
                Policy("s16", target=16, on_demand=4, spot_group=12, zones=tuple(zones[:2]), fallback=FallbackPolicy()),
                Policy("hedge", target=16, spot_group=20, zones=tuple(zones), dynamic_on_demand=True,
                       avoid_preempted_zones=True),
                Policy("one", target=4, spot_group=4, zones=tuple(zones[:1]))]
    for p in policies:
        cap = ts.capacity(list(p.zones))
        step = simulate(p, cap, ts.gap_seconds, coalesce=False)
        fast = simulate(p, cap, ts.gap_seconds, coalesce=True)
        # THEN every figure and both series are the same
        assert step.summary() == fast.summary(), p.name
        assert np.array_equal(step.ready, fast.ready) and np.array_equal(step.on_demand_share, fast.on_demand_share)


def test_the_fallback_decides_with_the_handlers_code(monkeypatch):
    # GIVEN the engine WHEN the handler's decision is replaced THEN the engine's behaviour follows it
    from spotkit.runtime.interruption import fallback
    from spotkit.simulate import engine

    assert engine.decide_fall_back is fallback.decide_fall_back
    assert engine.decide_return is fallback.decide_return
    calls = []
    monkeypatch.setattr(engine, "decide_fall_back", lambda **kw: calls.append(kw) or fallback.Step("skipped", kw["base"]))
    r = simulate(od_and_spot(), room(2, value=0), 300)
    assert calls and r.fallback_episodes == 0 and r.availability == 0.0


def test_a_second_loss_in_fallback_raises_the_base_again():
    # GIVEN 2 spot replicas over 2 zones, b with room for 1; a empties at tick 10, b at tick 20
    cap = room(2)
    cap[1, :] = 1
    cap[0, 10:] = 0
    cap[1, 20:] = 0
    r = simulate(Policy("two", target=2, spot_group=2, zones=("a", "b"), fallback=FallbackPolicy()), cap, 300)
    # THEN each loss finds no room and raises the base (two episodes): the second loss is a new shortfall,
    # not counted against the on-demand instance the first one added, so the group is short only while
    # each on-demand replacement boots (3 ticks in all, at most 10 minutes at once)
    assert r.fallback_episodes == 2
    assert r.availability == pytest.approx((DAY - 3) / DAY)
    assert r.longest_shortfall_minutes == 10
    # AND two on-demand instances are billed: one from the first loss, one from the second, to the end
    assert 2 * (DAY - 21) * 300 / 3600 <= r.on_demand_hours <= ((DAY - 10) + (DAY - 20)) * 300 / 3600
