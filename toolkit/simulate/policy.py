"""A stack's capacity policy, read from its synthesized Terraform JSON (``cdk.tf.json``), and the
policies it is compared with.

Read from the JSON:

- an ECS service (``gpu_inference``): ``desired_count`` replicas placed by its capacity provider
  strategy (``base`` on the provider that has one, the rest split by ``weight``); each provider's Auto
  Scaling group says whether it is spot (``on_demand_percentage_above_base_capacity`` below 100).
  A cluster without a service (``ecs_spot``) uses its default strategy for ``simulate.replicas``.
- an Auto Scaling group alone (``training``): ``simulate.replicas`` instances (default: the group's
  ``max_size``) split by its own base and percentage.
- the zones: the groups' subnets' ``availability_zone`` (a literal name, or the stack's "first N AZs
  of the region", which the simulation maps to the first N trace zones, or ``simulate.zones``).
- the fallback: the handler's environment (``SPOTKIT_FALLBACK*``, ``modules/capacity_fallback.py``).
- the spare replicas: the service's ``spotkit:spot-overprovision`` tag (``spotkit.runtime.notice``); its
  ``desired_count`` includes them, the target is ``desired_count`` minus them. A JSON without the tag
  (synthesized before it existed) takes the config's ``service.spot_overprovision``, else 0.

Not in the JSON, so from the config's ``simulate:`` section: the boot time, the price ratio.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from typing import Any, Mapping, Optional

from spotkit.errors import ToolkitError
from spotkit.runtime.interruption.fallback import FallbackPolicy
from spotkit.runtime.notice import SPOT_NOTICE_SECONDS, TAG_SPOT_OVERPROVISION
from spotkit.simulate.engine import Policy

# Replacement boot time: an instance launched, joined to the cluster and serving. Default 300 s, the
# stacks' own ECS managed-scaling ``instance_warmup_period`` (the time they tell AWS an instance takes
# to count). A large model's first load takes longer: set ``simulate.boot_seconds``.
DEFAULT_BOOT_SECONDS = 300
# Spot price as a fraction of on-demand. 0.35 is an assumption, not a measurement: AWS's Spot Instance
# Advisor has shown savings of about 60-70% over on-demand for the default GPU families (g5, g6, g6e)
# in us-east-1. Give your own per family: simulate.spot_price_ratio: {g5: 0.4, g6: 0.3}
DEFAULT_SPOT_PRICE_RATIO = 0.35
SIMULATE_KEYS = ("boot_seconds", "notice_seconds", "spot_price_ratio", "zones", "replicas",
                 "spothedge_overprovision")
_REF = re.compile(r"^\$\{([a-z0-9_]+)\.([^.}]+)\.[a-z_]+\}$")


class PolicyError(ToolkitError):
    """The stack has nothing to simulate, or the traces do not fit it."""


@dataclass
class StackPolicy:
    """What the JSON says (before zones are mapped to a trace)."""

    stack: str
    total: int                      # replicas run (desired_count: target + overprovision)
    overprovision: int
    on_demand: int                  # replicas on the on-demand provider (or the group's split)
    spot_group: int                 # desired capacity of the spot group
    spot_group_base: int
    spot_group_on_demand_percent: int
    zones: list[str]                # literal AZ names, or "" per AZ chosen at apply
    families: list[str]
    fallback: Optional[FallbackPolicy]
    notes: list[str] = field(default_factory=list)
    strategy: Optional[tuple[int, int, int]] = None   # ECS: (on-demand base, on-demand weight, spot weight)

    @property
    def target(self) -> int:
        return self.total - self.overprovision


def _list(v: Any) -> list:
    return [] if v is None else v if isinstance(v, list) else [v]


def _ref(value: Any) -> Optional[tuple[str, str]]:
    m = _REF.match(str(value))
    return (m.group(1), m.group(2)) if m else None


def _split(total: int, base: int, weights: tuple[int, int]) -> int:
    """On-demand tasks of ``total`` with ``base`` on on-demand and the rest split on:spot by weight."""
    above = max(0, total - base)
    w_od, w_spot = weights
    od_above = math.floor(above * w_od / (w_od + w_spot) + 0.5) if (w_od + w_spot) else 0
    return min(total, base) + od_above


def settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """The ``simulate:`` section of a config file, checked."""
    sim = config.get("simulate") or {}
    if not isinstance(sim, Mapping):
        raise PolicyError(f"simulate: expected a mapping, got {sim!r}", hint="e.g. simulate: {boot_seconds: 600}")
    for key in sim:
        if key not in SIMULATE_KEYS:
            raise PolicyError(f"simulate.{key}: unknown setting", hint=f"settings of simulate are: {', '.join(SIMULATE_KEYS)}")
    for key in ("boot_seconds", "notice_seconds", "replicas", "spothedge_overprovision"):
        v = sim.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
            raise PolicyError(f"simulate.{key}: expected a whole number, 0 or more (got {v!r})")
    ratio = sim.get("spot_price_ratio")
    values = ratio.values() if isinstance(ratio, Mapping) else [] if ratio is None else [ratio]
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 1:
            raise PolicyError(f"simulate.spot_price_ratio: expected a number above 0 and at most 1 (got {v!r})",
                              hint="the spot price as a fraction of on-demand, e.g. 0.35, or per family {g5: 0.4}")
    return dict(sim)


@dataclass
class _Split:
    """How the replicas split between the on-demand provider and the spot group (and inside the group)."""

    total: int
    on_demand: int
    spot_group: int
    group_base: int
    group_pct: int
    overprovision: int = 0
    strategy: Optional[tuple[int, int, int]] = None


def _dist(g: Mapping) -> dict:
    """An Auto Scaling group's ``instances_distribution`` (empty without a mixed instances policy)."""
    mip = (_list(g.get("mixed_instances_policy")) or [{}])[0]
    return (_list(mip.get("instances_distribution")) or [{}])[0] if mip else {}


def _is_spot(g: Mapping) -> bool:
    mip = _list(g.get("mixed_instances_policy"))
    return bool(mip) and int(_dist(g).get("on_demand_percentage_above_base_capacity", 100)) < 100


def _spot_group(res: Mapping[str, Any], stack: str) -> str:
    """The id of the stack's first Auto Scaling group with spot capacity; ``PolicyError`` when none has."""
    groups = res.get("aws_autoscaling_group") or {}
    spot_ids = [gid for gid, g in groups.items() if _is_spot(g)]
    if not spot_ids:
        raise PolicyError(f"stack {stack} has no spot capacity to simulate: every Auto Scaling group launches "
                          "only on-demand (on_demand_percentage_above_base_capacity 100)",
                          hint="give a group spot capacity in your config, or simulate another stack: spotkit simulate gpu_inference "
                               "--trace tests/fixtures/traces/aws-v100-16node-2023-08")
    return spot_ids[0]


def _strategy_weights(res: Mapping[str, Any], strategy: list, spot_id: str) -> tuple[int, int, int, bool]:
    """(on-demand base, on-demand weight, spot weight, whether the spot provider has a base) of an ECS
    capacity provider strategy; a provider is spot when its Auto Scaling group is ``spot_id``."""
    by_provider = {}
    for pid, p in (res.get("aws_ecs_capacity_provider") or {}).items():
        asg = (_list(p.get("auto_scaling_group_provider")) or [{}])[0].get("auto_scaling_group_arn")
        ref = _ref(asg)
        by_provider[pid] = ref[1] if ref else None
    od_weight = spot_weight = base = 0
    spot_has_base = False
    for item in strategy:
        ref = _ref(item.get("capacity_provider"))
        gid = by_provider.get(ref[1]) if ref else None
        if gid == spot_id:
            spot_weight += int(item.get("weight", 0) or 0)
            spot_has_base = spot_has_base or int(item.get("base", 0) or 0) > 0
        else:
            od_weight += int(item.get("weight", 0) or 0)
            base += int(item.get("base", 0) or 0)
    return base, od_weight, spot_weight, spot_has_base


def _service_replicas(service: Mapping, stack: str, stack_cfg: Mapping[str, Any]) -> tuple[int, int]:
    """(desired_count, the spare replicas in it) of an ECS service: the spares from its tag, else the config."""
    total = int(service.get("desired_count", 0) or 0)
    tagged = (service.get("tags") or {}).get(TAG_SPOT_OVERPROVISION)
    svc = stack_cfg.get("service") or {}
    if tagged is not None and not str(tagged).isdigit():
        raise PolicyError(f"stack {stack}: the service's {TAG_SPOT_OVERPROVISION} tag is {tagged!r}, not a "
                          "whole number", hint=f"synthesize the stack again: spotkit synth {stack}")
    return total, int(tagged if tagged is not None else svc.get("spot_overprovision", 0) or 0)


def _ecs_split(res: Mapping[str, Any], spot_id: str, stack: str, sim: Mapping[str, Any],
               stack_cfg: Mapping[str, Any], notes: list[str]) -> Optional[_Split]:
    """The split of an ECS service (or, without one, of the cluster's default strategy); None when the
    stack has no capacity provider strategy."""
    spot = res["aws_autoscaling_group"][spot_id]
    service = next(iter((res.get("aws_ecs_service") or {}).values()), None)
    strategy = _list(service.get("capacity_provider_strategy")) if service else []
    if not strategy:
        strategy = _list(next(iter((res.get("aws_ecs_cluster_capacity_providers") or {}).values()), {})
                         .get("default_capacity_provider_strategy"))
    if not (strategy and res.get("aws_ecs_capacity_provider")):
        return None
    base, od_weight, spot_weight, spot_has_base = _strategy_weights(res, strategy, spot_id)
    overprovision = 0
    if service:
        total, overprovision = _service_replicas(service, stack, stack_cfg)
    else:
        total = int(sim.get("replicas") or spot.get("max_size") or 0)
        notes.append(f"no ECS service: {total} replicas placed by the cluster's default strategy "
                     "(simulate.replicas to change)")
    if spot_has_base:
        notes.append("the spot provider has a base: it is counted as spot")
    if spot_weight == 0:
        raise PolicyError(f"stack {stack} has no spot capacity to simulate: the spot provider's weight is 0",
                          hint="give the spot provider a weight (service.spot_weight) in your config")
    on_demand = _split(total, base, (od_weight, spot_weight))
    d = _dist(spot)
    return _Split(total, on_demand, total - on_demand, int(d.get("on_demand_base_capacity", 0) or 0),
                  int(d.get("on_demand_percentage_above_base_capacity", 0) or 0), overprovision,
                  (base, od_weight, spot_weight))


def _group_split(spot: Mapping, sim: Mapping[str, Any], notes: list[str]) -> _Split:
    """An Auto Scaling group alone: all its instances in the group, split by its own base and percentage."""
    total = int(sim.get("replicas") or spot.get("desired_capacity") or spot.get("max_size") or 0)
    d = _dist(spot)
    if not sim.get("replicas"):
        notes.append(f"{total} instances: the group's {'desired capacity' if spot.get('desired_capacity') else 'max_size'} "
                     "(simulate.replicas to change)")
    return _Split(total, 0, total, int(d.get("on_demand_base_capacity", 0) or 0),
                  int(d.get("on_demand_percentage_above_base_capacity", 0) or 0))


def _zones(res: Mapping[str, Any], spot: Mapping) -> list[str]:
    """The AZs of the spot group's subnets: a literal name, or "" for one chosen at apply."""
    subnets = res.get("aws_subnet") or {}
    zones = []
    for s in _list(spot.get("vpc_zone_identifier")):
        ref = _ref(s)
        az = str((subnets.get(ref[1]) or {}).get("availability_zone", "")) if ref and ref[0] == "aws_subnet" else ""
        zones.append("" if "${" in az else az)
    return zones or [""] * 2


def _families(spot: Mapping) -> list[str]:
    """The instance families of the spot group's launch template overrides, in order."""
    mip = (_list(spot.get("mixed_instances_policy")) or [{}])[0]
    lt = (_list(mip.get("launch_template")) or [{}])[0]
    types = [o.get("instance_type") for o in _list(lt.get("override")) if o.get("instance_type")]
    return list(dict.fromkeys(t.split(".")[0] for t in types))


def _fallback(res: Mapping[str, Any]) -> Optional[FallbackPolicy]:
    """The fallback, as the handler reads it from its Lambda function's environment."""
    env = {}
    for fn in (res.get("aws_lambda_function") or {}).values():
        env = (_list(fn.get("environment")) or [{}])[0].get("variables") or {}
        if "SPOTKIT_FALLBACK" in env:
            break
    if str(env.get("SPOTKIT_FALLBACK", "false")).lower() != "true":
        return None
    return FallbackPolicy(max_on_demand_base=int(env.get("SPOTKIT_FALLBACK_MAX_ON_DEMAND_BASE", 2)),
                          hold_minutes=int(env.get("SPOTKIT_FALLBACK_HOLD_MINUTES", 30)),
                          check_every_minutes=int(env.get("SPOTKIT_FALLBACK_CHECK_EVERY_MINUTES", 10)))


def read_stack_policy(doc: Mapping[str, Any], stack: str, config: Mapping[str, Any]) -> StackPolicy:
    """The capacity policy in a synthesized stack (see the module doc)."""
    res = doc.get("resource") or {}
    sim = settings(config)
    if not res.get("aws_autoscaling_group"):
        raise PolicyError(f"stack {stack} has no Auto Scaling group: no spot capacity to simulate (the simulator "
                          "reads ECS services and Auto Scaling groups)",
                          hint="simulate gpu_inference, ecs_spot or training, e.g. spotkit simulate gpu_inference "
                               "--trace tests/fixtures/traces/aws-v100-16node-2023-08")
    spot_id = _spot_group(res, stack)
    spot = res["aws_autoscaling_group"][spot_id]
    notes: list[str] = []
    split = (_ecs_split(res, spot_id, stack, sim, config.get(stack) or {}, notes)
             or _group_split(spot, sim, notes))
    if split.total < 1 or split.spot_group < 1:
        raise PolicyError(f"stack {stack} has no spot capacity to simulate ({split.total} replicas, "
                          f"{split.spot_group} on spot)",
                          hint="raise the replicas (service.desired_count, or simulate.replicas) in your config")
    return StackPolicy(stack=stack, total=split.total, overprovision=split.overprovision, on_demand=split.on_demand,
                       spot_group=split.spot_group, spot_group_base=split.group_base,
                       spot_group_on_demand_percent=split.group_pct, zones=_zones(res, spot),
                       families=_families(spot), fallback=_fallback(res), notes=notes, strategy=split.strategy)


def map_zones(sp: StackPolicy, trace_zones: list[str], override: Optional[list[str]] = None) -> list[str]:
    """The trace zones standing for the stack's AZs; ``PolicyError`` when they do not match."""
    have = sorted(trace_zones)
    example = ",".join(have[:len(sp.zones)])
    if override:
        missing = [z for z in override if z not in have]
        if missing:
            raise PolicyError(f"zone {missing[0]} has no trace (the trace has {', '.join(have)})",
                              hint=f"name zones of the trace: --zones {example}")
        if len(override) != len(sp.zones):
            raise PolicyError(f"--zones names {len(override)} zone(s), the stack uses {len(sp.zones)} AZs",
                              hint=f"name {len(sp.zones)}: --zones {example}")
        return list(override)
    literal = [z for z in sp.zones if z]
    if literal:
        missing = [z for z in literal if z not in have]
        if missing:
            raise PolicyError(f"the stack's zone {missing[0]} has no trace (the trace has {', '.join(have)})",
                              hint=f"map the stack's AZs onto traced zones: --zones {example}")
        return literal
    if len(sp.zones) > len(have):
        raise PolicyError(f"the stack uses {len(sp.zones)} AZs but the trace has {len(have)} zone(s) ({', '.join(have)})",
                          hint="pass a trace with more zones, e.g. --trace tests/fixtures/traces/aws-v100-1node-2023-02")
    return have[:len(sp.zones)]


def price_ratio(families: list[str], sim: Mapping[str, Any]) -> float:
    """The spot/on-demand price ratio of the group: per family (mean of its families) or one number."""
    r = sim.get("spot_price_ratio")
    if r is None:
        return DEFAULT_SPOT_PRICE_RATIO
    if isinstance(r, Mapping):
        vals = [float(r.get(f, DEFAULT_SPOT_PRICE_RATIO)) for f in families] or [DEFAULT_SPOT_PRICE_RATIO]
        return sum(vals) / len(vals)
    return float(r)


def stack_policy(sp: StackPolicy, zones: list[str], sim: Mapping[str, Any], name: str = "stack") -> Policy:
    return Policy(name=name, target=sp.target, on_demand=sp.on_demand, spot_group=sp.spot_group,
                  spot_group_base=sp.spot_group_base, spot_group_on_demand_percent=sp.spot_group_on_demand_percent,
                  zones=tuple(zones), fallback=sp.fallback,
                  boot_seconds=int(sim.get("boot_seconds", DEFAULT_BOOT_SECONDS)),
                  notice_seconds=int(sim.get("notice_seconds", SPOT_NOTICE_SECONDS)),
                  spot_price_ratio=price_ratio(sp.families, sim),
                  description=(f"{sp.stack} as configured: {sp.on_demand} on-demand + {sp.spot_group} spot in "
                               f"{len(zones)} AZs, fallback "
                               + (f"ceiling {sp.fallback.max_on_demand_base}, hold {sp.fallback.hold_minutes} min"
                                  if sp.fallback else "off")))


def compared(sp: StackPolicy, zones: list[str], trace_zones: list[str], sim: Mapping[str, Any]) -> list[Policy]:
    """The stack, all on-demand, spot in one zone, and SpotHedge, on the same target."""
    stack = stack_policy(sp, zones, sim)
    n = sp.target
    extra = sim.get("spothedge_overprovision")
    extra = math.ceil(n / 4) if extra is None else int(extra)
    return [
        stack,
        replace(stack, name="on-demand", on_demand=n, spot_group=0, spot_group_base=0, fallback=None,
                description=f"all on-demand: {n} replicas"),
        replace(stack, name="one-zone-spot", on_demand=0, spot_group=n, spot_group_base=0,
                spot_group_on_demand_percent=0, zones=(zones[0],), fallback=None,
                description=f"{n} spot replicas in {zones[0]} only, no fallback"),
        replace(stack, name="spothedge", on_demand=0, spot_group=n + extra, spot_group_base=0,
                spot_group_on_demand_percent=0, zones=tuple(sorted(trace_zones)), fallback=None,
                dynamic_on_demand=True, avoid_preempted_zones=True,
                description=(f"SpotHedge-like: {n}+{extra} spot replicas spread over all {len(trace_zones)} traced "
                             "zones, a zone that preempts is avoided, on-demand covers ready spot below target")),
    ]


def levers(stack: Policy, sp: StackPolicy, trace_zones: list[str]) -> list[tuple[str, Policy]]:
    """One-setting changes of the stack policy, each with the setting that makes it."""
    out = []
    fb = stack.fallback
    if fb:
        c = fb.max_on_demand_base
        for to in sorted({c + 1, max(c + 1, sp.target)}):
            out.append((f"fallback.max_on_demand_base {c} -> {to}",
                        replace(stack, fallback=replace(fb, max_on_demand_base=to))))
        out.append((f"fallback.hold_minutes {fb.hold_minutes} -> {fb.hold_minutes * 2}",
                    replace(stack, fallback=replace(fb, hold_minutes=fb.hold_minutes * 2))))
    else:
        out.append(("fallback.enabled false -> true", replace(stack, fallback=FallbackPolicy())))
    if sp.strategy is not None:
        base, w_od, w_spot = sp.strategy

        def split(total: int, b: int, w: int) -> Policy:
            od = _split(total, b, (w, w_spot))
            return replace(stack, on_demand=od, spot_group=total - od)

        out.append((f"service.spot_overprovision {sp.overprovision} -> {sp.overprovision + 1}",
                    split(sp.total + 1, base, w_od)))
        if base > 0:
            out.append((f"service.on_demand_base {base} -> {base - 1}", split(sp.total, base - 1, w_od)))
        if w_od > 0 and sp.on_demand > base:
            out.append((f"service.on_demand_weight {w_od} -> 0 (spot above the base)", split(sp.total, base, 0)))
    else:
        out.append((f"simulate.replicas {sp.total} -> {sp.total + 1} (one spare)", replace(stack, spot_group=stack.spot_group + 1)))
    more = [z for z in sorted(trace_zones) if z not in stack.zones]
    if more:
        out.append((f"network.az_count {len(stack.zones)} -> {len(stack.zones) + 1} (adds {more[0]})",
                    replace(stack, zones=stack.zones + (more[0],))))
    return out
