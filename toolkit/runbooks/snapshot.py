"""``recover snapshot``: restore the newest snapshot of a group's device next to an instance."""

from __future__ import annotations

from dataclasses import dataclass, field

from botocore.exceptions import ClientError

from spotkit.errors import ToolkitError
from spotkit.runbooks import aws_calls as aws
from spotkit.runbooks.base import Action, RunContext, Runbook, register, token


@dataclass
class SnapshotResult:
    group: str
    device: str
    snapshot_id: str
    snapshot_time: str
    instance_id: str
    availability_zone: str
    volume_id: str | None
    status: str
    dry_run: bool
    actions: list[Action]
    made: list[dict] = field(default_factory=list)


@register("snapshot")
class RestoreSnapshot(Runbook):
    """Restore the newest snapshot of a group's device to a new volume next to an instance, and attach it.

    1. Find the newest completed snapshot tagged ``spotkit:group`` and ``spotkit:device`` (one filtered call).
    2. Pick the instance: the one given, else the first running instance of the group without that device.
    3. Find the volume an earlier run restored from that snapshot for that instance (journal, then tags),
       else create it in the instance's AZ (snapshot tags copied, origin recorded, ClientToken) and wait
       until it is available.
    4. Attach it as the device and wait until it is in use. Nothing existing is deleted or modified.
    """

    def __init__(self, ec2, ctx: RunContext | None = None):
        super().__init__(ctx)
        self.ec2 = ec2

    def newest_snapshot(self, group: str, device: str) -> dict:
        snaps = aws.snapshots_with_tags(self.ec2, [aws.tag_filter(aws.GROUP_TAG, group),
                                                   aws.tag_filter(aws.DEVICE_TAG, device),
                                                   {"Name": "status", "Values": ["completed"]}])
        if not snaps:
            raise ToolkitError(
                f"no completed snapshot of {device} for group {group!r}",
                hint=f"check the device name and the snapshot schedule of the group (spotkit status --group {group})",
            )
        return max(snaps, key=lambda s: (s["StartTime"], s["SnapshotId"]))

    def pick_instance(self, group: str, device: str, instance_id: str | None) -> dict:
        if instance_id:
            reservations = self.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
            inst = reservations[0]["Instances"][0]
            if inst["State"]["Name"] != "running":
                raise ToolkitError(f"instance {instance_id} is {inst['State']['Name']}, not running",
                                   hint="pass --instance-id of a running instance, or leave it out to pick one of the group")
            return inst
        instances = aws.group_instances(self.ec2, group)
        free = [i for i in sorted(instances, key=lambda i: i["InstanceId"])
                if device not in {b["DeviceName"] for b in i.get("BlockDeviceMappings", [])}]
        if not free:
            raise ToolkitError(
                f"no running instance of group {group!r} lacks {device}",
                hint=f"wait for the group to launch one (spotkit recover replace --group {group}), or pass --instance-id",
            )
        return free[0]

    def _earlier_restore(self, snap: dict, instance_id: str | None) -> tuple[dict | None, str | None]:
        """(instance, volume) of a restore an earlier (perhaps killed) run made from ``snap`` for a running
        instance (the one given, if any), else (None, None). It decides the instance, so a re-run finishes
        that restore instead of starting a second one on another instance."""
        earlier = [v for v in aws.volumes_with_tag(self.ec2, aws.ORIGIN_SNAPSHOT_TAG, [snap["SnapshotId"]])
                   if v["State"] in ("creating", "available", "in-use")
                   and aws.tags_of(v).get(aws.RESTORED_FOR_TAG)
                   and instance_id in (None, aws.tags_of(v).get(aws.RESTORED_FOR_TAG))]
        for v in sorted(earlier, key=lambda v: v["VolumeId"]):
            try:
                candidate = self.ec2.describe_instances(InstanceIds=[aws.tags_of(v)[aws.RESTORED_FOR_TAG]])
            except ClientError:  # the instance is gone: that restore is not resumable
                continue
            found = candidate["Reservations"][0]["Instances"][0] if candidate["Reservations"] else None
            if found and found["State"]["Name"] == "running":
                return found, v["VolumeId"]
        return None, None

    def run(self, group: str, device: str, instance_id: str | None = None) -> SnapshotResult:
        snap = self.newest_snapshot(group, device)
        journal = self.journal(f"{group}-{device}")
        inst, volume_id = self._earlier_restore(snap, instance_id)
        if inst is None:
            inst = self.pick_instance(group, device, instance_id)
        iid, az = inst["InstanceId"], inst["Placement"]["AvailabilityZone"]
        step = f"restore:{snap['SnapshotId']}:{iid}"
        volume_id = volume_id or journal.get(step).get("volume_id")
        result = SnapshotResult(group, device, snap["SnapshotId"], str(snap["StartTime"]), iid, az, volume_id,
                                "planned", self.ctx.dry_run, self.actions)
        attached = {b["DeviceName"]: b.get("Ebs", {}).get("VolumeId") for b in inst.get("BlockDeviceMappings", [])}
        if device in attached:
            if volume_id and attached[device] == volume_id:
                result.status = "attached"
                journal.finish(f"attach:{volume_id}", instance=iid, device=device)
                result.made = journal.made
                return result
            raise ToolkitError(f"instance {iid} already has {device} attached ({attached[device]})",
                               hint="pass --instance-id of an instance without that device, or --device with a free device name")
        if volume_id is None:
            volume_id = self._create_volume(journal, step, snap, group, device, iid, az)
            if volume_id is None:  # dry run
                result.status = "would-restore"
                return result
        result.volume_id = volume_id
        result.status = self._attach(journal, step, volume_id, iid, device)
        if result.status == "attached":
            result.made = journal.made
        return result

    def _create_volume(self, journal, step: str, snap: dict, group: str, device: str, iid: str, az: str) -> str | None:
        """Create the volume from ``snap`` in the instance's AZ (snapshot tags copied, origin recorded,
        ClientToken); its id, or None in a dry run."""
        tags = {**aws.copyable_tags(aws.tags_of(snap)), aws.GROUP_TAG: group, aws.DEVICE_TAG: device,
                aws.ORIGIN_SNAPSHOT_TAG: snap["SnapshotId"], aws.RESTORED_FOR_TAG: iid}
        tags.pop(aws.ORIGIN_VOLUME_TAG, None)
        tags.pop(aws.TARGET_AZ_TAG, None)
        resp = self.mutate(f"create a volume from {snap['SnapshotId']} in {az} for {iid}",
                           self.ec2.create_volume, SnapshotId=snap["SnapshotId"], AvailabilityZone=az,
                           VolumeType="gp3", TagSpecifications=aws.tag_spec("volume", tags),
                           ClientToken=token("restore", snap["SnapshotId"], iid))
        if resp is None:
            self.mutate(f"attach the new volume to {iid} as {device}", lambda **_: None)
            return None
        volume_id = resp["VolumeId"]
        journal.made_resource("volume", volume_id, step, snapshot=snap["SnapshotId"], instance=iid)
        journal.record(step, status="created", volume_id=volume_id)
        self.step("volume-created")
        return volume_id

    def _attach(self, journal, step: str, volume_id: str, iid: str, device: str) -> str:
        """Attach the volume as the device (once it is available) and wait until it is in use, unless it
        already is; ``attached``, or ``would-attach`` in a dry run."""
        state = self.ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"][0]["State"]
        if state != "in-use":
            if not self.ctx.dry_run:
                aws.wait(self.ec2, "volume_available", VolumeIds=[volume_id], delay=self.ctx.wait_delay,
                         max_attempts=self.ctx.wait_attempts, what=f"volume {volume_id} to become available")
                journal.finish(step, volume_id=volume_id)
            self.mutate(f"attach {volume_id} to {iid} as {device}", self.ec2.attach_volume,
                        VolumeId=volume_id, InstanceId=iid, Device=device)
            if self.ctx.dry_run:
                return "would-attach"
            self.step("attach-called")
            aws.wait(self.ec2, "volume_in_use", VolumeIds=[volume_id], delay=self.ctx.wait_delay,
                     max_attempts=self.ctx.wait_attempts, what=f"volume {volume_id} to attach to {iid}")
        journal.finish(f"attach:{volume_id}", instance=iid, device=device)
        return "attached"


def restore_snapshot(ec2, group: str, device: str, instance_id: str | None = None,
                     ctx: RunContext | None = None) -> SnapshotResult:
    """Code entry point: ``restore_snapshot(boto3.client('ec2'), 'training', '/dev/sdf')``."""
    return RestoreSnapshot(ec2, ctx).run(group, device, instance_id)
