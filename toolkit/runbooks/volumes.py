"""``recover volumes``: put a group's retained data volumes back on its running instances."""

from __future__ import annotations

from dataclasses import dataclass, field

from botocore.exceptions import ClientError

from spotkit.errors import AwsCallError, ToolkitError
from spotkit.runbooks import aws_calls as aws
from spotkit.runbooks.base import Action, RunContext, Runbook, register, token


@dataclass
class Placement:
    """Where one retained volume goes.

    ``mode``: ``attach`` (same AZ), ``copy`` (snapshot, new volume in the instance's AZ, attach),
    ``waiting`` (no instance of the group lacks the device), ``az-mismatch`` (only instances in another
    AZ, and copying is not allowed).

    ``status`` ends as ``attached``, or ``taken`` when between planning and attaching something else got
    there first (the instance's own boot part attached a volume as the device, or another instance took
    this volume); ``note`` then says what EC2 answered.
    """

    volume_id: str
    device: str
    volume_az: str
    mode: str
    instance_id: str | None = None
    instance_az: str | None = None
    snapshot_id: str | None = None
    copy_volume_id: str | None = None
    status: str = "planned"
    note: str | None = None


@dataclass
class VolumesResult:
    group: str
    dry_run: bool
    placements: list[Placement]
    actions: list[Action]
    superseded: dict[str, str] = field(default_factory=dict)
    resumed: bool = False
    made: list[dict] = field(default_factory=list)
    superseded_copies: dict[str, str] = field(default_factory=dict)  # a copy that lost a race -> the winner
    journal_skipped: list[str] = field(default_factory=list)  # unreadable records of a killed run's journal log

    @property
    def taken(self) -> list[Placement]:
        return [p for p in self.placements if p.status == "taken"]

    @property
    def unresolved(self) -> list[Placement]:
        return [p for p in self.placements if p.mode in ("waiting", "az-mismatch")]

    def raise_for_unresolved(self) -> None:
        """Raise a ToolkitError that says what to do next when a volume could not be placed."""
        if self.taken:
            p = self.taken[0]
            raise ToolkitError(
                f"{len(self.taken)} retained volume(s) of group {self.group!r} could not be attached because "
                f"something attached first ({p.volume_id} to {p.instance_id} as {p.device}: {p.note})",
                hint=f"an instance's boot part claims its data volume itself; run 'spotkit recover volumes --group "
                     f"{self.group}' again to place what still waits",
            )
        waiting = [p for p in self.placements if p.mode == "waiting"]
        mismatch = [p for p in self.placements if p.mode == "az-mismatch"]
        if mismatch:
            p = mismatch[0]
            raise ToolkitError(
                f"{len(mismatch)} retained volume(s) of group {self.group!r} are in another AZ than every "
                f"instance that lacks their device ({p.volume_id} {p.device} is in {p.volume_az}, "
                f"replacement {p.instance_id} is in {p.instance_az}) and copying across AZs was not allowed",
                hint=f"run again with --allow-copy to snapshot and re-create them in the replacement's AZ, "
                     f"or make the group launch an instance in {p.volume_az}",
            )
        if waiting:
            devices = ", ".join(sorted({f"{p.volume_id} ({p.device}, {p.volume_az})" for p in waiting}))
            raise ToolkitError(
                f"no running instance of group {self.group!r} lacks the device of {len(waiting)} retained "
                f"volume(s): {devices}",
                hint=f"wait for the group to launch a replacement (spotkit recover replace --group {self.group}), "
                     f"then run 'spotkit recover volumes --group {self.group}' again",
            )


# What EC2 answers when a volume or a device was taken between planning and attaching
# (InvalidParameterValue only with "Attachment point ... is already in use").
ATTACH_RACE_CODES = ("VolumeInUse", "IncorrectState", "InvalidParameterValue")


@register("volumes")
class RecoverVolumes(Runbook):
    """Find a group's retained data volumes and attach each to a running instance that lacks its device.

    1. List the group's running instances and their devices (one paginated, filtered call).
    2. List the group's retained volumes (``spotkit:group``, ``spotkit:retain=true``), in one call; a volume
       that a copy was made from is superseded by that copy and left alone.
    3. Plan: each available volume goes to an instance of the group in its AZ that lacks its device
       (``spotkit:device``); failing that, to one in another AZ (copy); failing that, it waits.
    4. Same AZ: attach the volume as its device and wait until it is in use.
    5. Other AZ: snapshot the volume (tagged with its origin and target AZ), wait until complete;
       create a volume from it in the instance's AZ (tags copied, origin recorded, ClientToken), wait
       until available; attach it. The original is never deleted or modified.
    6. Journal every step and every resource made; a re-run finds them by journal or by tag.
    7. One run per group: the whole run holds a file lock on its journal and (with an ``autoscaling``
       client) the group's lease tag ``spotkit:lock`` (``spotkit.runbooks.lock``); a second copy of one
       volume for one AZ made by a racing run anyway is tagged ``spotkit:superseded-by`` (and
       ``spotkit:retain=superseded``) and never offered as a waiting volume; nothing is deleted.
    """

    def __init__(self, ec2, ctx: RunContext | None = None, *, allow_copy: bool = True, autoscaling=None):
        super().__init__(ctx)
        self.ec2 = ec2
        self.allow_copy = allow_copy
        self.autoscaling = autoscaling  # for the group's lease (toolkit.runbooks.lock); None: the file lock only
        self.superseded_copies: dict[str, str] = {}  # copy that lost a race -> the copy that won

    # --- planning -----------------------------------------------------------------------------

    def plan(self, group: str) -> tuple[list[Placement], dict[str, str], dict[str, dict]]:
        instances = aws.group_instances(self.ec2, group, states=("running",))
        volumes = aws.group_volumes(self.ec2, group, retained_only=True)
        by_id = {v["VolumeId"]: v for v in volumes}
        taken: set[tuple[str, str]] = set()
        for inst in instances:
            for bdm in inst.get("BlockDeviceMappings", []):
                taken.add((inst["InstanceId"], bdm["DeviceName"]))
        for vol in volumes:
            for att in vol.get("Attachments", []):
                if att.get("State") in ("attaching", "attached"):
                    taken.add((att["InstanceId"], att["Device"]))
        superseded = {}
        for vol in volumes:
            origin = aws.tags_of(vol).get(aws.ORIGIN_VOLUME_TAG)
            if origin and vol["State"] not in ("deleting", "deleted", "error") and not aws.tags_of(vol).get(aws.SUPERSEDED_BY_TAG):
                superseded[origin] = vol["VolumeId"]
        candidates = []
        for vol in volumes:
            tags = aws.tags_of(vol)
            if vol["VolumeId"] in superseded or not tags.get(aws.DEVICE_TAG) or tags.get(aws.SUPERSEDED_BY_TAG):
                continue
            if vol["State"] == "available" or (vol["State"] == "creating" and aws.ORIGIN_VOLUME_TAG in tags):
                candidates.append(vol)
        candidates.sort(key=lambda v: (aws.tags_of(v)[aws.DEVICE_TAG], v["VolumeId"]))
        ordered = sorted(instances, key=lambda i: (i["Placement"]["AvailabilityZone"], str(i.get("LaunchTime")), i["InstanceId"]))
        placements = []
        free_for: dict[str, list[dict]] = {}  # device -> instances (in order) that lack it, as placing goes on
        for vol in candidates:
            device = aws.tags_of(vol)[aws.DEVICE_TAG]
            az = vol["AvailabilityZone"]
            if device not in free_for:
                free_for[device] = [i for i in ordered if (i["InstanceId"], device) not in taken]
            free = free_for[device]
            same = next((i for i in free if i["Placement"]["AvailabilityZone"] == az), None)
            if same is not None:
                target, mode = same, "attach"
            elif free:
                target, mode = free[0], "copy" if self.allow_copy else "az-mismatch"
            else:
                placements.append(Placement(vol["VolumeId"], device, az, "waiting", status="waiting"))
                continue
            if mode != "az-mismatch":
                taken.add((target["InstanceId"], device))
                free.remove(target)
            placements.append(Placement(vol["VolumeId"], device, az, mode, target["InstanceId"],
                                        target["Placement"]["AvailabilityZone"],
                                        status="planned" if mode != "az-mismatch" else "az-mismatch"))
        return placements, superseded, by_id

    # --- running ------------------------------------------------------------------------------

    def run(self, group: str) -> VolumesResult:
        with self.locked(group, self.autoscaling):
            return self._run(group)

    def _run(self, group: str) -> VolumesResult:
        journal = self.journal(group)
        resumed = journal.resumed
        placements, superseded, volumes = self.plan(group)
        if not self.ctx.dry_run:
            journal.start_run()
        work = [p for p in placements if p.mode in ("attach", "copy")]
        pending: list[Placement] = []  # attached without waiting: one batched waiter for all of them
        for n, p in enumerate(work):
            self.progress(n, len(work), f"{p.volume_id} -> {p.instance_id}")
            if p.mode == "attach":
                if self._attach(journal, volumes[p.volume_id], p.instance_id, p.device, p, wait=False):
                    pending.append(p)
            else:
                self._copy_and_attach(journal, volumes[p.volume_id], p)
            self.progress(n + 1, len(work), f"{p.volume_id} -> {p.instance_id}")
        for part in aws.chunks(pending, aws.MAX_IDS_PER_WAIT):
            aws.wait(self.ec2, "volume_in_use", VolumeIds=[p.volume_id for p in part], delay=self.ctx.wait_delay,
                     max_attempts=self.ctx.wait_attempts, what=f"{len(part)} volume(s) to attach")
            journal.finish_many({f"attach:{p.volume_id}": {"instance": p.instance_id, "device": p.device} for p in part})
            for p in part:
                p.status = "attached"
            self.step("attached")
        return VolumesResult(group, self.ctx.dry_run, placements, self.actions, superseded, resumed,
                             journal.made, dict(self.superseded_copies), list(self.journal_skipped))

    def _attach(self, journal, vol: dict | None, instance_id: str, device: str, p: Placement,
                volume_id: str | None = None, wait: bool = True) -> bool:
        """Attach; True when the call was made and the attachment is still to be waited for."""
        volume_id = volume_id or vol["VolumeId"]
        step = f"attach:{volume_id}"
        if vol is not None and vol.get("State") == "creating" and not self.ctx.dry_run:
            aws.wait(self.ec2, "volume_available", VolumeIds=[volume_id], delay=self.ctx.wait_delay,
                     max_attempts=self.ctx.wait_attempts, what=f"volume {volume_id} to become available")
        try:
            self.mutate(f"attach {volume_id} to {instance_id} as {device}", self.ec2.attach_volume,
                        VolumeId=volume_id, InstanceId=instance_id, Device=device)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            if error.get("Code") not in ATTACH_RACE_CODES or (
                    error.get("Code") == "InvalidParameterValue" and "already in use" not in str(error.get("Message"))):
                raise
            self._attached_meanwhile(journal, step, volume_id, instance_id, device, p, exc)
            return False
        if self.ctx.dry_run:
            p.status = "would-attach"
            return False
        journal.record(step, status="attaching", instance=instance_id, device=device)
        self.step("attach-called")
        if not wait:
            return True
        aws.wait(self.ec2, "volume_in_use", VolumeIds=[volume_id], delay=self.ctx.wait_delay,
                 max_attempts=self.ctx.wait_attempts, what=f"volume {volume_id} to attach to {instance_id}")
        journal.finish(step, instance=instance_id, device=device)
        p.status = "attached"
        self.step("attached")
        return False

    def _attached_meanwhile(self, journal, step: str, volume_id: str, instance_id: str, device: str, p: Placement,
                            exc: ClientError) -> None:
        """EC2 refused the attach: the volume or the device was taken after planning. Look, never force."""
        current = self.ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"][0]
        live = [a for a in current.get("Attachments", []) if a.get("State") in ("attaching", "attached")]
        if any(a["InstanceId"] == instance_id and a["Device"] == device for a in live):
            journal.finish(step, instance=instance_id, device=device, attached_by="another caller")
            p.status, p.note = "attached", "attached meanwhile by another caller (the instance's boot part)"
            return
        error = exc.response.get("Error", {})
        p.status, p.note = "taken", f"{error.get('Code')}: {error.get('Message')}"

    def _copy_and_attach(self, journal, vol: dict, p: Placement) -> None:
        """Other AZ: snapshot ``vol``, make a volume from the snapshot in the instance's AZ, attach it (steps
        5 and 6 of the class doc). What a killed run made is found again by journal or by tag."""
        key = f"{vol['VolumeId']}:{p.instance_az}"
        snapshot_id = self._copy_snapshot(journal, vol, p, key)
        if snapshot_id is None:  # dry run
            return
        copy_id = self._copy_volume(journal, vol, p, key, snapshot_id)
        if copy_id is None:  # dry run (resuming after the snapshot)
            return
        self._attach_copy(journal, f"copy-volume:{key}", p, copy_id)

    def _copy_snapshot(self, journal, vol: dict, p: Placement, key: str) -> str | None:
        """The snapshot to copy ``vol`` from, completed: from the journal, else by idempotency tags, else made
        now. None in a dry run that would make it (the rest is "would" too)."""
        snap_step = f"snapshot:{key}"
        snapshot_id = journal.get(snap_step).get("snapshot_id")
        if snapshot_id is None:
            found = aws.snapshots_with_tags(self.ec2, [
                aws.tag_filter(aws.ORIGIN_VOLUME_TAG, vol["VolumeId"]),
                aws.tag_filter(aws.TARGET_AZ_TAG, p.instance_az),
                {"Name": "status", "Values": ["pending", "completed"]},
            ])
            if found:
                snapshot_id = sorted(found, key=lambda s: s["StartTime"])[-1]["SnapshotId"]
        if snapshot_id is None:
            snapshot_id = self._create_snapshot(journal, snap_step, vol, p)
            if snapshot_id is None:  # dry run
                self.mutate(f"create a volume from that snapshot in {p.instance_az} (tags copied, origin "
                            f"{vol['VolumeId']})", lambda **_: None)
                self.mutate(f"attach the new volume to {p.instance_id} as {p.device}", lambda **_: None)
                p.status = "would-copy"
                return None
        p.snapshot_id = snapshot_id
        if not self.ctx.dry_run:
            aws.wait(self.ec2, "snapshot_completed", SnapshotIds=[snapshot_id], delay=self.ctx.wait_delay,
                     max_attempts=self.ctx.wait_attempts, what=f"snapshot {snapshot_id} to complete")
            journal.finish(snap_step, snapshot_id=snapshot_id)
        return snapshot_id

    def _create_snapshot(self, journal, snap_step: str, vol: dict, p: Placement) -> str | None:
        """Snapshot ``vol``, tagged with its origin and target AZ, and journal it; None in a dry run."""
        tags = {**aws.copyable_tags(aws.tags_of(vol)), aws.ORIGIN_VOLUME_TAG: vol["VolumeId"],
                aws.TARGET_AZ_TAG: p.instance_az}
        try:
            resp = self.mutate(
                f"snapshot {vol['VolumeId']} ({p.device}, {p.volume_az}) to copy it to {p.instance_az} "
                f"for {p.instance_id}",
                self.ec2.create_snapshot, VolumeId=vol["VolumeId"],
                Description=f"spotkit: copy of {vol['VolumeId']} to {p.instance_az}",
                TagSpecifications=aws.tag_spec("snapshot", tags))
        except ClientError as exc:
            if aws.is_permission_error(exc):
                raise AwsCallError(
                    f"no permission to copy {vol['VolumeId']} ({p.device}) from {p.volume_az} to "
                    f"{p.instance_az}: {exc.response['Error'].get('Code')} on CreateSnapshot",
                    hint="grant ec2:CreateSnapshot, ec2:CreateVolume and ec2:CreateTags to this role, or make "
                         f"the group launch an instance in {p.volume_az} and run again",
                ) from exc
            raise
        if resp is None:  # dry run
            return None
        snapshot_id = resp["SnapshotId"]
        journal.made_resource("snapshot", snapshot_id, snap_step, origin=vol["VolumeId"])
        journal.record(snap_step, status="created", snapshot_id=snapshot_id)
        self.step("snapshot-created")
        return snapshot_id

    def _copy_volume(self, journal, vol: dict, p: Placement, key: str, snapshot_id: str) -> str | None:
        """The volume in the replacement's AZ: the live copy (journal or tags), else one made now; a second
        copy a racing run made is settled. None in a dry run that would make it."""
        vol_step = f"copy-volume:{key}"
        copies = self._copies(vol["VolumeId"], p.instance_az)
        if not copies:
            copies = self._create_copy(journal, vol_step, vol, p, snapshot_id)
            if copies is None:  # dry run
                return None
        copy = self._settle_copies(journal, vol_step, copies)
        copy_id = copy["VolumeId"]
        if journal.get(vol_step).get("volume_id") != copy_id:
            journal.record(vol_step, volume_id=copy_id)
        p.copy_volume_id = copy_id
        return copy_id

    def _create_copy(self, journal, vol_step: str, vol: dict, p: Placement, snapshot_id: str) -> list[dict] | None:
        """Create the copy (tags copied, origin recorded, ClientToken) and journal it; then the live copies,
        this one among them. None in a dry run."""
        tags = {**aws.copyable_tags(aws.tags_of(vol)), aws.ORIGIN_VOLUME_TAG: vol["VolumeId"],
                aws.ORIGIN_SNAPSHOT_TAG: snapshot_id, aws.TARGET_AZ_TAG: p.instance_az}
        kwargs = dict(SnapshotId=snapshot_id, AvailabilityZone=p.instance_az, VolumeType=vol.get("VolumeType", "gp3"),
                      TagSpecifications=aws.tag_spec("volume", tags),
                      ClientToken=token("copy-volume", vol["VolumeId"], p.instance_az))
        if vol.get("VolumeType") in ("io1", "io2", "gp3") and vol.get("Iops"):
            kwargs["Iops"] = vol["Iops"]
        if vol.get("VolumeType") == "gp3" and vol.get("Throughput"):
            kwargs["Throughput"] = vol["Throughput"]
        resp = self.mutate(f"create a volume from {snapshot_id} in {p.instance_az} (origin {vol['VolumeId']})",
                           self.ec2.create_volume, **kwargs)
        if resp is None:  # dry run (resuming after the snapshot): the rest is "would" too
            self.mutate(f"attach the new volume to {p.instance_id} as {p.device}", lambda **_: None)
            p.status = "would-copy"
            return None
        made = resp["VolumeId"]
        journal.made_resource("volume", made, vol_step, origin=vol["VolumeId"], snapshot=snapshot_id)
        journal.record(vol_step, status="created", volume_id=made)
        self.step("volume-created")
        # Look again: a run that raced this one (despite the lease) may have made a copy as well.
        copies = self._copies(vol["VolumeId"], p.instance_az)
        if made not in {c["VolumeId"] for c in copies}:
            copies.append({**resp, "State": resp.get("State", "creating")})
        return copies

    def _attach_copy(self, journal, vol_step: str, p: Placement, copy_id: str) -> None:
        """Attach the copy once it is available, unless it already is attached (before a kill, or by the
        run that raced this one)."""
        current = self.ec2.describe_volumes(VolumeIds=[copy_id])["Volumes"][0]
        if current["State"] == "in-use":
            live = [a for a in current.get("Attachments", []) if a.get("State") in ("attaching", "attached")]
            journal.finish(vol_step, volume_id=copy_id)
            p.status = "attached"
            if live and (live[0]["InstanceId"], live[0]["Device"]) != (p.instance_id, p.device):
                p.instance_id, p.note = live[0]["InstanceId"], f"attached as {live[0]['Device']} by another run"
            return
        if not self.ctx.dry_run:
            aws.wait(self.ec2, "volume_available", VolumeIds=[copy_id], delay=self.ctx.wait_delay,
                     max_attempts=self.ctx.wait_attempts, what=f"volume {copy_id} to become available")
            journal.finish(vol_step, volume_id=copy_id)
        self._attach(journal, None, p.instance_id, p.device, p, volume_id=copy_id)

    def _copies(self, origin: str, az: str) -> list[dict]:
        """Live copies of ``origin`` made for ``az`` that are not superseded (one filtered call)."""
        return [v for v in aws.volumes_with_tag(self.ec2, aws.ORIGIN_VOLUME_TAG, [origin])
                if aws.tags_of(v).get(aws.TARGET_AZ_TAG) == az and v["State"] in ("creating", "available", "in-use")
                and not aws.tags_of(v).get(aws.SUPERSEDED_BY_TAG)]

    def _settle_copies(self, journal, step: str, copies: list[dict]) -> dict:
        """One copy per original and AZ: the attached one, else the oldest. Every other one that is not
        attached is tagged superseded by it (``spotkit:superseded-by``, ``spotkit:retain=superseded``), so
        neither this runbook nor the boot part nor ``status`` ever offers it as a waiting volume. It is kept,
        never deleted: it holds the same data as the winner, and removing it is the user's call."""
        ranked = sorted(copies, key=lambda v: (v["State"] != "in-use", str(v.get("CreateTime", "")), v["VolumeId"]))
        winner = ranked[0]
        for loser in ranked[1:]:
            if loser["State"] == "in-use":
                continue
            self.mutate(f"tag {loser['VolumeId']} superseded by {winner['VolumeId']} (a second copy made by a "
                        f"concurrent run; kept, never offered as a waiting volume)",
                        self.ec2.create_tags, Resources=[loser["VolumeId"]],
                        Tags=[{"Key": aws.SUPERSEDED_BY_TAG, "Value": winner["VolumeId"]},
                              {"Key": aws.RETAIN_TAG, "Value": aws.RETAIN_SUPERSEDED}])
            self.superseded_copies[loser["VolumeId"]] = winner["VolumeId"]
            journal.record(f"superseded:{loser['VolumeId']}", status="done", superseded_by=winner["VolumeId"])
        return winner


def recover_volumes(ec2, group: str, ctx: RunContext | None = None, *, allow_copy: bool = True,
                    autoscaling=None) -> VolumesResult:
    """Code entry point: ``recover_volumes(boto3.client('ec2'), 'training', autoscaling=boto3.client('autoscaling'))``.

    With ``autoscaling`` the run holds the group's lease (``spotkit.runbooks.lock``); without it, only the
    file lock on its journal."""
    return RecoverVolumes(ec2, ctx, allow_copy=allow_copy, autoscaling=autoscaling).run(group)
