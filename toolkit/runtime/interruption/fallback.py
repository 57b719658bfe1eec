"""The on-demand fallback of a spot group, and its return to spot: one implementation for the handler
(launch failures, the scheduled return check) and the runbooks (``recover replace`` / ``restore-spot``).

The contract lives on the Auto Scaling group's tags (``toolkit/runtime/notice.py``):

- ``spotkit:fallback-original-on-demand-base``: the on-demand base before the fallback. Written before
  the base is raised, removed last when it is restored, so a kill in between leaves a record to finish
  from. Its presence means "in fallback".
- ``spotkit:fallback-since``: when the fallback began; ``spotkit:fallback-changed-at``: the last change
  of the base (the hold time counts from it); ``spotkit:fallback-next-check``: when the scheduled return
  check looks next (what ``spotkit status`` shows).

Decisions (``Decision.action``):

``fall_back`` (a failed launch whose cause is spot capacity)
    raise ``OnDemandBaseCapacity`` by the shortfall it does not cover yet, bounded by ``max_on_demand_base``
    and the desired capacity. On-demand the base asked for that is not pending or running yet counts as
    covering, so a repeat of the same failure changes nothing (``kept``): it does not stack; a second loss
    after the on-demand is up raises the base again. ``skipped`` when the group launches no spot, has no
    mixed instances policy, or is not short.
``return_check`` (every ``check_every_minutes``)
    ``held`` until ``hold_minutes`` after the last change; ``still-failing`` while spot launches failed
    in the last ``hold_minutes`` (and since that change); ``spot-not-back`` when the spot placement score (where the account may read it) is below
    ``min_placement_score`` and no spot launch succeeded; otherwise step the base down by ``step``
    (``stepped-down``), and at the original remove the record (``restored``). Steps and the hold keep the
    group from flapping: a failure after a step raises it again, and the next step waits a hold time.

Every mutating call goes through ``mutate(description, call, **kwargs)``: the runbooks pass
``Runbook.mutate`` (dry run = "would ..."), the handler ``mutator(dry_run)``. The clock is injected
(``now``); nothing here sleeps. Standard library and boto3 clients only: this runs in the Lambda.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable, Optional

from botocore.exceptions import ClientError

from spotkit.runtime import notice

log = logging.getLogger("spotkit.interruption")

# Words AWS uses (scaling activities, launch-failure events) when spot capacity is not there.
CAPACITY_FAILURE_MARKERS = (
    "InsufficientInstanceCapacity",
    "capacity-not-available",
    "There is no Spot capacity available",
    "Could not launch Spot Instances",
    "UnfulfillableCapacity",
    "insufficient capacity",
    "We currently do not have sufficient",
    "MaxSpotInstanceCountExceeded",
    # The spot price is above the group's maximum: spot is not available *at this price*; on-demand is
    # the way to keep the capacity, exactly as for a capacity shortage.
    "SpotMaxPriceTooLow",
)
# Other causes, for the journal: these are fixed by a person, never by moving to on-demand.
OTHER_CAUSES = (
    ("iam", ("not authorized", "AccessDenied", "UnauthorizedOperation", "iamInstanceProfile", "instance profile")),
    ("image", ("InvalidAMIID", "AMI", "image id", "ImageId")),
    ("quota", ("VcpuLimitExceeded", "InstanceLimitExceeded", "vCPU", "quota", "limit exceeded")),
    ("subnet", ("InvalidSubnet", "subnet", "InsufficientFreeAddressesInSubnet", "free IP")),
)
SPOT_CAPACITY = "spot-capacity"
IN_SERVICE_STATES = ("InService", "Pending", "Pending:Wait", "Pending:Proceed")
NOT_PERMITTED = ("UnauthorizedOperation", "AccessDenied", "AccessDeniedException", "InvalidAction",
                 "OptInRequired", "UnsupportedOperation")

Mutate = Callable[..., Any]


def classify(text: str) -> str:
    """``spot-capacity``, ``iam``, ``image``, ``quota``, ``subnet`` or ``other`` for a failure message."""
    low = (text or "").lower()
    if any(m.lower() in low for m in CAPACITY_FAILURE_MARKERS):
        return SPOT_CAPACITY
    for cause, words in OTHER_CAUSES:
        if any(w.lower() in low for w in words):
            return cause
    return "other"


def is_capacity_activity(activity: dict) -> bool:
    """A failed (or cancelled) scaling activity whose words say spot capacity was not there."""
    if activity.get("StatusCode") not in ("Failed", "Cancelled"):
        return False
    text = " ".join(str(activity.get(k, "")) for k in ("StatusMessage", "Description", "Cause"))
    return classify(text) == SPOT_CAPACITY


@dataclass(frozen=True)
class FallbackPolicy:
    """How the automatic fallback behaves (the stacks' ``fallback`` settings).

    - ``max_on_demand_base``: the ceiling of the raised on-demand base. Default 2.
    - ``hold_minutes``: the least time between two changes of the base. Default 30.
    - ``check_every_minutes``: how often the return check runs. Default 10.
    - ``step``: how many units each return step gives back to spot. Default 1.
    - ``min_placement_score``: a spot placement score (1-10) below this means spot is not back. Default 7.
    """

    max_on_demand_base: int = 2
    hold_minutes: int = 30
    check_every_minutes: int = 10
    step: int = 1
    min_placement_score: int = 7


@dataclass(frozen=True)
class FallbackRecord:
    original_on_demand_base: int
    since: Optional[datetime]
    changed_at: Optional[datetime]
    next_check: Optional[datetime]


@dataclass
class Decision:
    group: str
    action: str
    message: str
    on_demand_base_before: int = 0
    on_demand_base_after: int = 0
    original_on_demand_base: Optional[int] = None
    detail: dict = field(default_factory=dict)

    def to_detail(self) -> dict:
        return {"group": self.group, "decision": self.action, "on_demand_base_before": self.on_demand_base_before,
                "on_demand_base_after": self.on_demand_base_after,
                "original_on_demand_base": self.original_on_demand_base, **self.detail}


# --- reading a group ----------------------------------------------------------------------------

def tags_of(g: dict) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in g.get("Tags", []) or []}


def on_demand_base(g: dict) -> int:
    return int(g.get("MixedInstancesPolicy", {}).get("InstancesDistribution", {}).get("OnDemandBaseCapacity", 0) or 0)


def in_service(g: dict) -> int:
    return sum(1 for i in g.get("Instances", []) if i.get("LifecycleState") in IN_SERVICE_STATES)


def read_record(g: dict) -> Optional[FallbackRecord]:
    tags = tags_of(g)
    if notice.TAG_FALLBACK_BASE not in tags:
        return None
    return FallbackRecord(int(tags[notice.TAG_FALLBACK_BASE]), notice.try_parse_time(tags.get(notice.TAG_FALLBACK_SINCE)),
                          notice.try_parse_time(tags.get(notice.TAG_FALLBACK_CHANGED)),
                          notice.try_parse_time(tags.get(notice.TAG_FALLBACK_NEXT_CHECK)))


def describe_group(autoscaling, group: str) -> Optional[dict]:
    groups = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[group])["AutoScalingGroups"]
    return groups[0] if groups else None


@dataclass(frozen=True)
class Live:
    """The group's instances that Auto Scaling counts and EC2 has pending or running (Auto Scaling lags
    behind an instance EC2 already took away): ``total``, and of them ``on_demand`` (no ``InstanceLifecycle``
    of ``spot``)."""

    total: int
    on_demand: int


def live_instances(ec2, g: dict) -> Live:
    """The group's live instances, read from EC2 (``DescribeInstances``: state and ``InstanceLifecycle``)."""
    ids = [i["InstanceId"] for i in g.get("Instances", []) if i.get("LifecycleState") in IN_SERVICE_STATES]
    total = on_demand = 0
    for page in ec2.get_paginator("describe_instances").paginate(InstanceIds=ids) if ids else ():
        for i in (i for r in page["Reservations"] for i in r["Instances"]):
            if i["State"]["Name"] in ("pending", "running"):
                total += 1
                on_demand += i.get("InstanceLifecycle") != "spot"
    return Live(total, on_demand)


def activities_since(autoscaling, group: str, since: datetime) -> list[dict]:
    """The group's scaling activities that started at or after ``since`` (newest first, paginated)."""
    out = []
    for page in autoscaling.get_paginator("describe_scaling_activities").paginate(AutoScalingGroupName=group):
        for act in page.get("Activities", []):
            start = notice.try_parse_time(act.get("StartTime"))
            if start is not None and start < since:
                return out
            out.append(act)
    return out


# --- changing a group (through ``mutate``) ------------------------------------------------------

def direct(description: str, call: Callable[..., Any], **kwargs: Any) -> Any:
    return call(**kwargs)


def mutator(dry_run: bool, done: Optional[list] = None) -> Mutate:
    """``mutate`` for code outside the runbooks: logs "would ..." in a dry run; collects descriptions."""

    def mutate(description: str, call: Callable[..., Any], **kwargs: Any) -> Any:
        if done is not None:
            done.append(("would " if dry_run else "") + description)
        if dry_run:
            log.info("would %s", description)
            return None
        return call(**kwargs)

    return mutate


def _asg_tag(group: str, key: str, value: Optional[str] = None) -> dict:
    tag = {"ResourceId": group, "ResourceType": "auto-scaling-group", "Key": key}
    if value is not None:
        tag.update(Value=value, PropagateAtLaunch=False)
    return tag


def set_on_demand_base(autoscaling, g: dict, base: int, mutate: Mutate = direct) -> Any:
    """Set the group's ``OnDemandBaseCapacity`` (the rest of its mixed instances policy unchanged)."""
    policy = g.get("MixedInstancesPolicy")
    lt = dict(policy["LaunchTemplate"])
    spec = dict(lt["LaunchTemplateSpecification"])
    if spec.get("LaunchTemplateId"):
        spec.pop("LaunchTemplateName", None)  # the API takes one of the two
    lt["LaunchTemplateSpecification"] = spec
    dist = dict(policy.get("InstancesDistribution", {}))
    dist["OnDemandBaseCapacity"] = base
    return mutate(f"set OnDemandBaseCapacity of {g['AutoScalingGroupName']} from {on_demand_base(g)} to {base}",
                  autoscaling.update_auto_scaling_group, AutoScalingGroupName=g["AutoScalingGroupName"],
                  MixedInstancesPolicy={"LaunchTemplate": lt, "InstancesDistribution": dist})


def write_record(autoscaling, group: str, values: dict[str, str], mutate: Mutate = direct,
                 description: str = "") -> Any:
    """Write fallback tags (keys from ``notice.FALLBACK_TAGS``) on the group, in one call."""
    return mutate(description or f"tag {group} with " + ", ".join(f"{k}={v}" for k, v in values.items()),
                  autoscaling.create_or_update_tags, Tags=[_asg_tag(group, k, v) for k, v in values.items()])


def clear_record(autoscaling, group: str, mutate: Mutate = direct) -> Any:
    """Remove every fallback tag from the group (the last step of a restore)."""
    return mutate(f"remove the fallback record from {group}", autoscaling.delete_tags,
                  Tags=[_asg_tag(group, k) for k in notice.FALLBACK_TAGS])


# --- the decisions ------------------------------------------------------------------------------

def _uses_spot(g: dict) -> Optional[str]:
    """Why the group cannot fall back to on-demand, or None when it can."""
    policy = g.get("MixedInstancesPolicy")
    if not policy:
        return f"group {g['AutoScalingGroupName']} has no mixed instances policy: nothing to fall back from"
    above = int(policy.get("InstancesDistribution", {}).get("OnDemandPercentageAboveBaseCapacity", 100) or 0)
    if above >= 100:
        return f"group {g['AutoScalingGroupName']} launches only on-demand (100% above base): nothing to fall back from"
    return None


@dataclass(frozen=True)
class Step:
    """What a decision does to the on-demand base, without AWS: ``action`` (a ``Decision.action``),
    ``target`` (the base after it) and ``shortfall`` (``fall_back`` only). ``spotkit simulate`` replays
    traces through these same two functions."""

    action: str
    target: int
    shortfall: int = 0


def decide_fall_back(*, base: int, recorded: bool, desired: int, live: int, on_demand_live: int,
                     policy: FallbackPolicy) -> Step:
    """``raised`` by the part of the shortfall the base does not cover yet (bounded by the ceiling and
    ``desired``); ``kept`` (in fallback already: a repeat does not stack) or ``skipped`` (not short, or at
    the ceiling).

    The base covers ``base - on_demand_live`` instances still to come (on-demand it asked for that are not
    pending or running yet): a repeat of the failure that raised it, or a redelivery, finds its shortfall
    covered and changes nothing. A second loss once those are up (another zone emptied during the
    fallback) is a new shortfall, and raises the base again."""
    short = max(0, desired - live)
    coming = max(0, base - on_demand_live)
    target = min(base + max(0, short - coming), policy.max_on_demand_base, desired)
    if short == 0 or target <= base:
        return Step("kept" if recorded else "skipped", base, short)
    return Step("raised", target, short)


def decide_return(*, base: int, original: int, now: datetime, changed: datetime, failures: int,
                  spot_launches: int, score: Callable[[], Optional[int]], policy: FallbackPolicy) -> Step:
    """The return check: ``still-failing`` (capacity failures since the last change, within the hold
    time), ``held`` (the hold time since the last change has not passed), ``spot-not-back`` (``score()``,
    asked only when no spot launch succeeded, is below the minimum), else ``stepped-down`` by ``step``
    or ``restored`` at the original base."""
    if failures:
        return Step("still-failing", base)
    if now < changed + timedelta(minutes=policy.hold_minutes):
        return Step("held", base)
    s = None if spot_launches else score()
    if s is not None and s < policy.min_placement_score:
        return Step("spot-not-back", base)
    target = max(original, base - policy.step)
    return Step("restored" if target == original else "stepped-down", target)


def _read(autoscaling, group: str) -> tuple[Optional[dict], int, Optional[FallbackRecord]]:
    """The group's description, its on-demand base and its fallback record; ``(None, 0, None)`` if it is gone."""
    g = describe_group(autoscaling, group)
    return (g, on_demand_base(g), read_record(g)) if g is not None else (None, 0, None)


def _missing(group: str) -> Decision:
    return Decision(group, "skipped", f"group {group} does not exist")


def fall_back(autoscaling, ec2, group: str, *, policy: FallbackPolicy, now: datetime, mutate: Mutate = direct,
              cause: str = "") -> Decision:
    """Raise the group's on-demand base by the shortfall it does not cover yet (bounded), once per loss."""
    g, base, rec = _read(autoscaling, group)
    if g is None:
        return _missing(group)
    original = rec.original_on_demand_base if rec else base
    d = Decision(group, "skipped", "", base, base, original if rec else None, {"cause": cause})
    why_not = _uses_spot(g)
    if why_not:
        d.message = why_not
        return d
    desired = int(g["DesiredCapacity"])
    live = live_instances(ec2, g)
    step = decide_fall_back(base=base, recorded=rec is not None, desired=desired, live=live.total,
                            on_demand_live=live.on_demand, policy=policy)
    short, target = step.shortfall, step.target
    d.detail["shortfall"] = short
    if short == 0:
        d.action, d.message = step.action, f"group {group} is not short of capacity (desired {desired})"
        return d
    if step.action != "raised":
        if rec:
            d.action = "kept"
            d.message = (f"group {group} is already in fallback (on-demand base {base}, original {original}); "
                         f"the repeat does not stack")
        else:
            d.message = (f"group {group}: on-demand base {base} is already at the ceiling "
                         f"(max_on_demand_base {policy.max_on_demand_base})")
        return d
    stamp = notice.format_time(now)
    next_check = notice.format_time(now + timedelta(minutes=policy.check_every_minutes))
    if rec is None:  # the original first, before anything changes: a kill after it leaves a record
        write_record(autoscaling, group, {notice.TAG_FALLBACK_BASE: str(base), notice.TAG_FALLBACK_SINCE: stamp,
                                          notice.TAG_FALLBACK_CHANGED: stamp, notice.TAG_FALLBACK_NEXT_CHECK: next_check},
                     mutate, f"record the original on-demand base {base} on {group}")
    else:
        write_record(autoscaling, group, {notice.TAG_FALLBACK_CHANGED: stamp, notice.TAG_FALLBACK_NEXT_CHECK: next_check},
                     mutate)
    set_on_demand_base(autoscaling, g, target, mutate)
    d.action, d.on_demand_base_after, d.original_on_demand_base = "raised", target, original
    d.message = (f"raised the on-demand base of {group} from {base} to {target} (shortfall {short}, ceiling "
                 f"{policy.max_on_demand_base}); spot returns by the scheduled check")
    return d


def placement_score(ec2, g: dict, capacity: int, region: str) -> Optional[int]:
    """The best spot placement score (1-10) of the group's instance types for ``capacity`` units, or None
    when the account may not read scores (or the group names no instance types)."""
    overrides = g.get("MixedInstancesPolicy", {}).get("LaunchTemplate", {}).get("Overrides", []) or []
    types = sorted({o["InstanceType"] for o in overrides if o.get("InstanceType")})
    if not types or ec2 is None:
        return None
    try:
        scores = ec2.get_spot_placement_scores(InstanceTypes=types, TargetCapacity=max(1, capacity),
                                               RegionNames=[region])["SpotPlacementScores"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code", "") in NOT_PERMITTED:
            return None
        raise
    return max((int(s.get("Score", 0)) for s in scores), default=None)


def spot_launches(ec2, activities: list[dict]) -> int:
    """Successful launches among ``activities`` whose instance is spot."""
    ids = []
    for act in activities:
        if act.get("StatusCode") == "Successful" and "Launching" in str(act.get("Description", "")):
            ids += [w.rstrip(".,") for w in str(act.get("Description", "")).split() if w.startswith("i-")]
    if not ids or ec2 is None:
        return 0
    try:
        res = ec2.describe_instances(InstanceIds=sorted(set(ids)))["Reservations"]
    except ClientError:
        return 0  # instances long gone: no evidence either way
    return sum(1 for r in res for i in r["Instances"] if i.get("InstanceLifecycle") == "spot")


def return_check(autoscaling, ec2, group: str, *, policy: FallbackPolicy, now: datetime, mutate: Mutate = direct,
                 region: str = "") -> Decision:
    """Move a group in fallback one step back to spot when spot launches succeed again (see the module doc).

    Long: ``decide_return`` holds the decision; what stays here is the reads it needs and one message per
    outcome, each quoting those reads."""
    g, base, rec = _read(autoscaling, group)
    if g is None:
        return _missing(group)
    if rec is None:
        return Decision(group, "nothing-recorded", f"group {group} is not in fallback", base, base)
    original = rec.original_on_demand_base
    d = Decision(group, "held", "", base, base, original)
    changed = rec.changed_at or rec.since or now
    next_check = notice.format_time(now + timedelta(minutes=policy.check_every_minutes))
    acts = activities_since(autoscaling, group, changed)
    # Failures of the last hold time (and since the last change) keep the fallback; older ones are history.
    recent = max(changed, now - timedelta(minutes=policy.hold_minutes))
    failures = [a for a in acts if is_capacity_activity(a)
                and (notice.try_parse_time(a.get("StartTime")) or now) >= recent]
    spot_ok = spot_launches(ec2, acts)
    d.detail.update(capacity_failures=len(failures), spot_launches=spot_ok, next_check=next_check)
    hold_until = changed + timedelta(minutes=policy.hold_minutes)
    scores: list = []

    def score() -> Optional[int]:
        scores.append(placement_score(ec2, g, base - original, region or autoscaling.meta.region_name))
        return scores[-1]

    step = decide_return(base=base, original=original, now=now, changed=changed, failures=len(failures),
                         spot_launches=spot_ok, score=score, policy=policy)
    if step.action == "still-failing":
        d.action = "still-failing"
        d.message = (f"spot launches of {group} failed {len(failures)} time(s) since {notice.format_time(recent)} "
                     f"(latest: {failures[0].get('StatusMessage') or failures[0].get('Description', '')}); "
                     f"on-demand base stays {base}")
    elif step.action == "held":
        d.action = "held"
        d.message = f"{group} holds on-demand base {base} until {notice.format_time(hold_until)} (hold_minutes {policy.hold_minutes})"
    else:
        score_read = scores[0] if scores else None
        d.detail["placement_score"] = score_read
        if step.action == "spot-not-back":
            d.action = "spot-not-back"
            d.message = (f"spot placement score {score_read} < {policy.min_placement_score} for {group}'s types; "
                         f"on-demand base stays {base}")
        else:
            target = step.target
            evidence = (f"{spot_ok} spot launch(es) succeeded" if spot_ok else
                        f"spot placement score {score_read}" if score_read is not None else
                        f"no spot capacity failure for {policy.hold_minutes} minutes")
            set_on_demand_base(autoscaling, g, target, mutate)
            d.on_demand_base_after = target
            if target == original:
                clear_record(autoscaling, group, mutate)
                d.action = "restored"
                d.message = f"{evidence}: restored the on-demand base of {group} to {target} (the original split)"
                return d
            write_record(autoscaling, group, {notice.TAG_FALLBACK_CHANGED: notice.format_time(now),
                                              notice.TAG_FALLBACK_NEXT_CHECK: next_check}, mutate)
            d.action = "stepped-down"
            d.message = (f"{evidence}: lowered the on-demand base of {group} from {base} to {target} "
                         f"(original {original}); the next step after {policy.hold_minutes} minutes")
            return d
    write_record(autoscaling, group, {notice.TAG_FALLBACK_NEXT_CHECK: next_check}, mutate)
    return d


def groups_in_fallback(autoscaling, names: tuple[str, ...] = ()) -> list[str]:
    """Groups carrying the fallback record (one paginated, filtered call), limited to ``names`` if given."""
    found = []
    for page in autoscaling.get_paginator("describe_auto_scaling_groups").paginate(
            Filters=[{"Name": "tag-key", "Values": [notice.TAG_FALLBACK_BASE]}]):
        found += [g["AutoScalingGroupName"] for g in page["AutoScalingGroups"]]
    return sorted(n for n in found if not names or n in names)


def cluster_groups(ecs, cluster: str) -> list[str]:
    """The Auto Scaling groups behind an ECS cluster's capacity providers."""
    if not cluster:
        return []
    clusters = ecs.describe_clusters(clusters=[cluster])["clusters"]
    names = [n for c in clusters for n in c.get("capacityProviders", []) if not n.startswith("FARGATE")]
    if not names:
        return []
    providers = ecs.describe_capacity_providers(capacityProviders=names)["capacityProviders"]
    arns = [p.get("autoScalingGroupProvider", {}).get("autoScalingGroupArn", "") for p in providers]
    return sorted({a.rsplit("autoScalingGroupName/", 1)[-1] for a in arns if "autoScalingGroupName/" in a})
