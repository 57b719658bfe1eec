"""``spotkit status``: spot vs on-demand per group, interruptions, waiting volumes, snapshot ages, fallbacks."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterable

from spotkit.runtime.notice import CAPACITY_KINDS, TAG_FALLBACK_CHANGED, TAG_FALLBACK_NEXT_CHECK
from spotkit.runbooks import aws_calls as aws
from spotkit.runbooks.base import now


@dataclass
class DeviceSnapshot:
    device: str
    snapshot_id: str
    age_minutes: int


@dataclass
class GroupStatus:
    group: str
    desired: int | None
    spot: int
    on_demand: int
    waiting_volumes: list[dict] = field(default_factory=list)
    snapshots: list[DeviceSnapshot] = field(default_factory=list)
    fallback: dict | None = None
    interruptions: list[dict] = field(default_factory=list)
    capacity_events: list[dict] = field(default_factory=list)  # launch / placement failures the handler journaled


@dataclass
class StatusResult:
    groups: list[GroupStatus]


def status(ec2, autoscaling, group: str | None = None, *, interruptions: Iterable[dict] = (),
           recent: int = 5) -> StatusResult:
    """Read-only overview. The number of AWS calls is fixed (four paginated, filtered reads), whatever the size.

    ``interruptions``: journal entries of the interruption handler (dicts with ``group``, ``instance_id``,
    ``time``...); the newest ``recent`` per group are shown.
    """
    groups = aws.describe_groups(autoscaling, [group] if group else None)
    instances = aws.group_instances(ec2, group, states=("pending", "running"))
    volumes = aws.group_volumes(ec2, group, retained_only=True)
    # The group's snapshots by the group tag alone; "completed, with a device tag" is checked here: a group's
    # snapshots are nearly all device snapshots, so two more server-side filters would save no payload (and
    # cost the emulator a tag scan per snapshot each).
    snap_filters = [aws.tag_filter(aws.GROUP_TAG, group) if group else {"Name": "tag-key", "Values": [aws.GROUP_TAG]}]
    snapshots = [s for s in aws.snapshots_with_tags(ec2, snap_filters)
                 if s.get("State") == "completed" and aws.DEVICE_TAG in aws.tags_of(s)]

    out: dict[str, GroupStatus] = {}
    _add_groups(out, groups)
    _add_instances(out, instances)
    _add_waiting_volumes(out, volumes)
    _add_snapshots(out, snapshots)
    _add_events(out, interruptions, group, recent)
    for e in out.values():
        e.waiting_volumes.sort(key=lambda v: (v["device"] or "", v["volume_id"]))
    return StatusResult(sorted(out.values(), key=lambda e: e.group))


def _entry(out: dict[str, GroupStatus], name: str) -> GroupStatus:
    if name not in out:
        out[name] = GroupStatus(name, None, 0, 0)
    return out[name]


def _add_groups(out: dict[str, GroupStatus], groups: list[dict]) -> None:
    """Each Auto Scaling group's desired capacity, and its fallback when its base is raised."""
    for g in groups:
        tags = aws.tags_of({"Tags": g.get("Tags", [])})
        name = tags.get(aws.GROUP_TAG, g["AutoScalingGroupName"])
        e = _entry(out, name)
        e.desired = g["DesiredCapacity"]
        if aws.FALLBACK_BASE_TAG in tags:
            dist = g.get("MixedInstancesPolicy", {}).get("InstancesDistribution", {})
            e.fallback = {"original_on_demand_base": int(tags[aws.FALLBACK_BASE_TAG]),
                          "on_demand_base": int(dist.get("OnDemandBaseCapacity", 0) or 0),
                          "since": tags.get(aws.FALLBACK_SINCE_TAG),
                          # set by the automatic fallback (a fallback made by 'recover replace' has no check)
                          "changed_at": tags.get(TAG_FALLBACK_CHANGED),
                          "next_check": tags.get(TAG_FALLBACK_NEXT_CHECK)}


def _add_instances(out: dict[str, GroupStatus], instances: list[dict]) -> None:
    """Spot and on-demand instances per group."""
    for inst in instances:
        e = _entry(out, aws.tags_of(inst)[aws.GROUP_TAG])
        if inst.get("InstanceLifecycle") == "spot":
            e.spot += 1
        else:
            e.on_demand += 1


def _add_waiting_volumes(out: dict[str, GroupStatus], volumes: list[dict]) -> None:
    """Retained volumes that are available and not superseded by a copy."""
    superseded = {aws.tags_of(v).get(aws.ORIGIN_VOLUME_TAG) for v in volumes} - {None}
    for vol in volumes:
        if vol["State"] == "available" and vol["VolumeId"] not in superseded:
            tags = aws.tags_of(vol)
            _entry(out, tags[aws.GROUP_TAG]).waiting_volumes.append(
                {"volume_id": vol["VolumeId"], "device": tags.get(aws.DEVICE_TAG), "az": vol["AvailabilityZone"]})


def _add_snapshots(out: dict[str, GroupStatus], snapshots: list[dict]) -> None:
    """The newest snapshot of each group's device, with its age."""
    newest: dict[tuple[str, str], dict] = {}
    for snap in snapshots:
        tags = aws.tags_of(snap)
        key = (tags[aws.GROUP_TAG], tags[aws.DEVICE_TAG])
        if key not in newest or snap["StartTime"] > newest[key]["StartTime"]:
            newest[key] = snap
    t = now()
    for (name, device), snap in sorted(newest.items()):
        age = int((t - snap["StartTime"].astimezone(t.tzinfo)).total_seconds() // 60)
        _entry(out, name).snapshots.append(DeviceSnapshot(device, snap["SnapshotId"], max(0, age)))


def _add_events(out: dict[str, GroupStatus], interruptions: Iterable[dict], group: str | None, recent: int) -> None:
    """The newest ``recent`` interruptions and capacity events per group, newest first."""
    by_group: dict[str, list[dict]] = defaultdict(list)
    for event in interruptions:
        if event.get("group") and (group is None or event["group"] == group):
            by_group[event["group"]].append(event)
    for name, events in by_group.items():
        newest_first = sorted(events, key=lambda e: str(e.get("time", "")), reverse=True)
        _entry(out, name).interruptions = [e for e in newest_first if e.get("kind") not in CAPACITY_KINDS][:recent]
        _entry(out, name).capacity_events = [e for e in newest_first if e.get("kind") in CAPACITY_KINDS][:recent]


def interruptions_from_store(store) -> list[dict]:
    """Every event a journal holds (``DynamoDBStore`` or ``LocalFileStore``), as ``status`` reads them:
    ``event_id``, ``group`` (recorded by the handler from the instance's tags), ``instance_id``, ``kind``,
    ``time``, ``status`` (done, failed, ignored, dropped, claimed) and ``reason``."""
    return [e for e in store.events() if e.get("kind") != "dropped"]


def interruptions_from_journal(path) -> list[dict]:
    """Events the interruption handler journaled in a local JSON-lines file (empty if there is none)."""
    from pathlib import Path

    if not path or not Path(path).is_file():
        return []
    from spotkit.runtime.interruption.store import LocalFileStore

    return interruptions_from_store(LocalFileStore(path))


def journal_table_from_outputs(outputs: dict, stack: str) -> str:
    """The journal table a deployed stack's Terraform outputs name."""
    from spotkit.errors import ToolkitError

    table = outputs.get("interruption_journal_table")
    if not table:
        raise ToolkitError(f"stack {stack} has no interruption_journal_table output (not applied yet, or its "
                           "interruption handling is off)",
                           hint=f"run 'spotkit output {stack}' to see its outputs, or pass --journal-table NAME")
    return str(table)
