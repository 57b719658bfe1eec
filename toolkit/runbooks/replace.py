"""``recover replace`` and ``recover restore-spot``: desired capacity, with on-demand fallback while spot is scarce."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field

from spotkit.errors import ToolkitError
from spotkit.runtime.interruption import fallback as fb
from spotkit.runtime.notice import TAG_FALLBACK_CHANGED, TAG_GROUP, format_time
from spotkit.runbooks import aws_calls as aws
from spotkit.runbooks.base import Action, RunContext, Runbook, now, register

# Words AWS uses in scaling activities when spot capacity is not there: shared with the handler.
CAPACITY_FAILURE_MARKERS = fb.CAPACITY_FAILURE_MARKERS


@dataclass
class CapacityFailure:
    activity_id: str
    start_time: str
    message: str


@dataclass
class ReplaceResult:
    group: str
    desired: int
    in_service: int
    shortfall: int
    capacity_failures: list[CapacityFailure]
    on_demand_base_before: int
    on_demand_base_after: int
    fallback_in_force: bool
    original_on_demand_base: int | None
    status: str  # ok | launching | fallback | fallback-kept | restored | nothing-recorded
    dry_run: bool
    actions: list[Action] = field(default_factory=list)


def is_capacity_failure(activity: dict) -> bool:
    return fb.is_capacity_activity(activity)


class _CapacityRunbook(Runbook):
    def __init__(self, autoscaling, ctx: RunContext | None = None, *, window_minutes: int = 30):
        super().__init__(ctx)
        self.autoscaling = autoscaling
        self.window = _dt.timedelta(minutes=window_minutes)

    def read_group(self, group: str) -> dict:
        groups = aws.describe_groups(self.autoscaling, [group])
        if not groups:
            raise ToolkitError(f"Auto Scaling group {group!r} not found",
                               hint=f"check the name with 'spotkit status' (groups are named after their {TAG_GROUP} tag)")
        return groups[0]

    def capacity_failures(self, group: str) -> list[CapacityFailure]:
        """Spot capacity failures among the group's scaling activities of the last window (newest first, paginated)."""
        since = now() - self.window
        out = []
        for act in aws.paginate(self.autoscaling, "describe_scaling_activities", "Activities",
                                AutoScalingGroupName=group):
            start = act.get("StartTime")
            if start is not None and start.tzinfo is None:
                start = start.replace(tzinfo=_dt.timezone.utc)
            if start is not None and start < since:
                break  # activities come newest first: the rest are older
            if is_capacity_failure(act):
                out.append(CapacityFailure(act.get("ActivityId", ""), str(start),
                                           act.get("StatusMessage") or act.get("Description", "")))
        return out

    def update_base(self, g: dict, base: int) -> None:
        fb.set_on_demand_base(self.autoscaling, g, base, self.mutate)


_in_service = fb.in_service
_base = fb.on_demand_base


def _fallback_tags(g: dict) -> dict[str, str]:
    return {k: v for k, v in fb.tags_of(g).items() if k in (aws.FALLBACK_BASE_TAG, aws.FALLBACK_SINCE_TAG)}


@register("replace")
class ReplaceCapacity(_CapacityRunbook):
    """Make sure a group has its desired capacity; fall back to on-demand while spot capacity keeps failing.

    1. Read the group: desired capacity, instances in service, instances distribution, fallback tags (one call).
    2. Read its scaling activities of the last window (paginated, newest first) and keep the spot
       capacity failures (InsufficientInstanceCapacity, capacity-not-available...).
    3. No shortfall: nothing to do.
    4. Shortfall without capacity failures (fewer than ``min_failures``): the group is still launching; say so.
    5. Shortfall with capacity failures: record the original on-demand base on the group
       (tag ``spotkit:fallback-original-on-demand-base``, before changing anything, and in the journal),
       then raise ``OnDemandBaseCapacity`` by the shortfall the base does not cover yet, as the handler's
       fallback decides it (``fallback.decide_fall_back``, from the group's live instances in EC2; never
       above desired, never lowered by a re-run). ``restore-spot`` reverts it.
    """

    def __init__(self, autoscaling, ec2, ctx: RunContext | None = None, *, window_minutes: int = 30,
                 min_failures: int = 2):
        super().__init__(autoscaling, ctx, window_minutes=window_minutes)
        self.ec2 = ec2
        self.min_failures = min_failures

    def run(self, group: str) -> ReplaceResult:
        g = self.read_group(group)
        desired, in_service, base = g["DesiredCapacity"], _in_service(g), _base(g)
        shortfall = max(0, desired - in_service)
        tags = _fallback_tags(g)
        original = int(tags[aws.FALLBACK_BASE_TAG]) if aws.FALLBACK_BASE_TAG in tags else None
        failures = self.capacity_failures(group) if shortfall else []
        result = ReplaceResult(group, desired, in_service, shortfall, failures, base, base, original is not None,
                               original, "ok", self.ctx.dry_run, self.actions)
        if shortfall == 0:
            result.status = "fallback-kept" if original is not None else "ok"
            return result
        if len(failures) < self.min_failures:
            result.status = "launching"
            return result
        if not g.get("MixedInstancesPolicy"):
            raise ToolkitError(f"group {group!r} has no mixed instances policy, so it cannot fall back to on-demand",
                               hint="use a SpotComputeGroup (mixed instances policy) or raise its capacity by hand")
        journal = self.journal(group)
        if original is None:
            original = base
            stamp = format_time(now())
            fb.write_record(self.autoscaling, group, {aws.FALLBACK_BASE_TAG: str(base), aws.FALLBACK_SINCE_TAG: stamp,
                                                      TAG_FALLBACK_CHANGED: stamp},
                            self.mutate, f"record the original on-demand base {base} on {group}")
            if not self.ctx.dry_run:
                journal.record("fallback", status="recorded", original_on_demand_base=base)
                self.step("fallback-recorded")
        live = fb.live_instances(self.ec2, g)
        target = fb.decide_fall_back(base=base, recorded=result.fallback_in_force, desired=desired, live=live.total,
                                     on_demand_live=live.on_demand,
                                     policy=fb.FallbackPolicy(max_on_demand_base=desired)).target
        result.original_on_demand_base = original
        if target > base:
            self.update_base(g, target)
            result.on_demand_base_after = target
            if not self.ctx.dry_run:
                journal.finish("fallback", original_on_demand_base=original, on_demand_base=target,
                               failures=len(failures))
                self.step("fallback-raised")
        result.fallback_in_force = True
        result.status = "fallback"
        return result


@register("restore-spot")
class RestoreSpot(_CapacityRunbook):
    """Revert an on-demand fallback once spot capacity is back.

    1. Read the group and its fallback tags; nothing recorded means nothing to revert.
    2. Unless forced, read the scaling activities of the last window: spot capacity failures there mean
       spot is not back yet (stop, say when to retry).
    3. Set ``OnDemandBaseCapacity`` back to the recorded original.
    4. Remove the fallback tags (last, so a kill before it leaves the record for a re-run).
    """

    def run(self, group: str, *, force: bool = False) -> ReplaceResult:
        g = self.read_group(group)
        base = _base(g)
        tags = _fallback_tags(g)
        result = ReplaceResult(group, g["DesiredCapacity"], _in_service(g), max(0, g["DesiredCapacity"] - _in_service(g)),
                               [], base, base, False, None, "nothing-recorded", self.ctx.dry_run, self.actions)
        if aws.FALLBACK_BASE_TAG not in tags:
            return result
        original = int(tags[aws.FALLBACK_BASE_TAG])
        result.original_on_demand_base = original
        result.fallback_in_force = True
        if not force:
            failures = self.capacity_failures(group)
            if failures:
                result.capacity_failures = failures
                raise ToolkitError(
                    f"spot capacity for group {group!r} still failed {len(failures)} time(s) in the last "
                    f"{int(self.window.total_seconds() // 60)} minutes (latest: {failures[0].message})",
                    hint=f"keep the on-demand fallback and try later, or run 'spotkit recover restore-spot --group {group} --force'",
                )
        if base != original:
            self.update_base(g, original)
            result.on_demand_base_after = original
            self.step("base-restored")
        fb.clear_record(self.autoscaling, group, self.mutate)
        if not self.ctx.dry_run:
            self.journal(group).finish("restore-spot", on_demand_base=original)
            result.fallback_in_force = False
        result.status = "restored"
        return result


def replace_capacity(autoscaling, ec2, group: str, ctx: RunContext | None = None, **kw) -> ReplaceResult:
    return ReplaceCapacity(autoscaling, ec2, ctx, **kw).run(group)


def restore_spot(autoscaling, group: str, ctx: RunContext | None = None, *, force: bool = False, **kw) -> ReplaceResult:
    return RestoreSpot(autoscaling, ctx, **kw).run(group, force=force)
