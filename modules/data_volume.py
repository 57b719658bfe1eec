"""Data volumes that outlive their instance, and the DLM policy that snapshots them.

Tag contract (the recovery runbooks find and re-attach volumes by these; do not change them):

- ``spotkit:group = <group name>``   the compute group (or standalone instance) the volume belongs to
- ``spotkit:device = <device name>``  the device it is attached as, e.g. ``/dev/sdf``
- ``spotkit:retain = true``           kept on terminate; safe to re-attach to a replacement
- ``spotkit:retain-group = <group>``  the one tag the DLM policy targets (see below)

How a compute group's instances get their data volume. Not from the launch template: a launch-template
volume is made fresh for every instance, so a replacement would already hold the device, and the
retained volume of the instance it replaces could never go back as the same device. Instead
``RetainedDataVolumes`` adds a boot-time user-data part (``spotkit.constructs.data_volume_boot``) that re-attaches
the group's retained volume waiting in the instance's AZ, or creates a new one carrying the whole tag
contract at creation, and mounts it. A volume attached through the API is kept on terminate. When the
only waiting volume is in another AZ, the part leaves the device to ``spotkit recover volumes`` (which
copies it across AZs through a snapshot) and mounts it once attached; ``in_other_az: create`` starts
with a new volume instead.

The instance role may (least privilege by condition): describe volumes (no resource-level
permissions exist); create a volume only with the request tags ``spotkit:group=<this group>`` and
``spotkit:retain=true``; tag volumes only in that CreateVolume call; attach only volumes and instances
tagged ``spotkit:group=<this group>``; use the KMS key of the volume through EC2 when one is given. A
standalone instance (``spotkit.constructs.spot_instance``) creates its data volume as an ``aws_ebs_volume`` and
tags it directly.

DLM ORs the target tags of a policy (a volume with *any* of them is snapshotted), so the policy targets
the single tag ``spotkit:retain-group=<group>``, which only this group's retained data volumes carry.
The policy is the only ``aws_dlm_lifecycle_policy`` resource spotkit creates (moto has no DLM: local
deployments leave that resource type out).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional, Sequence

from constructs import Construct

from spotkit.constructs.data_volume_boot import IN_OTHER_AZ, claim_script
from spotkit.constructs.iam import assume_role_policy
from spotkit.constructs.kms import is_key_arn, key_arn
from spotkit.constructs.user_data import UserDataPart
from spotkit.errors import ValidationError
from spotkit.runtime.notice import TAG_DEVICE, TAG_GROUP, TAG_RETAIN, TAG_RETAIN_GROUP, TAG_SNAPSHOT_OF

GROUP_TAG = TAG_GROUP
DEVICE_TAG = TAG_DEVICE
RETAIN_TAG = TAG_RETAIN
RETAIN_GROUP_TAG = TAG_RETAIN_GROUP
VOLUME_TYPES = ("gp3", "gp2", "io2", "io1", "st1", "sc1")
DLM_INTERVALS_HOURS = (1, 2, 3, 4, 6, 8, 12, 24)
DLM_SERVICE_ROLE_POLICY = "arn:aws:iam::aws:policy/service-role/AWSDataLifecycleManagerServiceRole"
_DEVICE = re.compile(r"^/dev/(sd[f-p]|xvd[f-p])$")


@dataclass(frozen=True)
class DataVolumeSettings:
    """One retained data volume.

    - ``device_name``: /dev/sdf../dev/sdp (or xvdf..xvdp). Default /dev/sdf.
    - ``size_gib``: 1-16384. Default 200.
    - ``volume_type``: gp3 (default), gp2, io2, io1, st1 or sc1. ``iops`` applies to gp3 (3000-16000) and
      io1/io2 (100-256000); ``throughput_mibps`` (125-1000) to gp3. Defaults 3000 and 250.
    - ``kms_key_id``: key for encryption (always on). Default: the account's default EBS key.
    - ``mount_point``: where the boot script mounts it (formats only a blank volume). Default /mnt/data.
    - ``in_other_az``: what a new instance does when the group's retained volume for this device waits
      only in another AZ. ``wait`` (default): attach nothing and mount the device once
      ``spotkit recover volumes`` has copied the volume into its AZ; ``create``: start with a new empty
      volume (the waiting one is kept).
    - ``wait_minutes``: how long the boot script waits for that copy before giving up, 1-1440. Default 120.
    """

    device_name: str = "/dev/sdf"
    size_gib: int = 200
    volume_type: str = "gp3"
    iops: int = 3000
    throughput_mibps: int = 250
    kms_key_id: Optional[str] = None
    mount_point: str = "/mnt/data"
    in_other_az: str = "wait"
    wait_minutes: int = 120


@dataclass(frozen=True)
class SnapshotSettings:
    """The DLM snapshot schedule of retained volumes.

    - ``enabled``: create the policy. Default on.
    - ``interval_hours``: 1, 2, 3, 4, 6, 8, 12 or 24. Default 12.
    - ``times``: start time(s) UTC "hh:mm". Default ("03:00",).
    - ``retain_count``: snapshots kept, 1-1000. Default 14.
    - ``copy_tags``: copy the volume's tags to its snapshots (so runbooks find them too). Default on.
    - ``fast_restore_availability_zones``: enable fast snapshot restore in these AZs (costly). Default none.
    - ``fast_restore_count``: snapshots kept fast-restorable, 1-1000. Default 1.
    """

    enabled: bool = True
    interval_hours: int = 12
    times: tuple[str, ...] = ("03:00",)
    retain_count: int = 14
    copy_tags: bool = True
    fast_restore_availability_zones: tuple[str, ...] = ()
    fast_restore_count: int = 1


def validate_data_volumes(where: str, volumes: Sequence[DataVolumeSettings]) -> None:
    seen: set[str] = set()
    for i, v in enumerate(volumes):
        key = f"data_volumes[{i}]"
        if not _DEVICE.match(v.device_name):
            raise ValidationError(
                f"{where}: {key}.device_name {v.device_name!r} is not a data-volume device: use /dev/sdf to /dev/sdp"
            )
        if v.device_name in seen:
            raise ValidationError(f"{where}: {key}.device_name {v.device_name!r} is used twice: give each volume its own device")
        seen.add(v.device_name)
        if not 1 <= v.size_gib <= 16384:
            raise ValidationError(f"{where}: {key}.size_gib must be between 1 and 16384 (got {v.size_gib})")
        if v.volume_type not in VOLUME_TYPES:
            raise ValidationError(f"{where}: {key}.volume_type {v.volume_type!r} is not one of {', '.join(VOLUME_TYPES)}")
        if v.volume_type in ("io1", "io2") and not 100 <= v.iops <= 256000:
            raise ValidationError(f"{where}: {key}.iops must be between 100 and 256000 for {v.volume_type} (got {v.iops})")
        if v.volume_type == "gp3":
            if not 3000 <= v.iops <= 16000:
                raise ValidationError(f"{where}: {key}.iops must be between 3000 and 16000 for gp3 (got {v.iops})")
            if not 125 <= v.throughput_mibps <= 1000:
                raise ValidationError(
                    f"{where}: {key}.throughput_mibps must be between 125 and 1000 for gp3 (got {v.throughput_mibps})"
                )
            if v.throughput_mibps * 4 > v.iops:
                raise ValidationError(
                    f"{where}: {key}.throughput_mibps ({v.throughput_mibps}) needs iops of at least "
                    f"{v.throughput_mibps * 4} (gp3 allows 0.25 MiB/s per IOPS): raise iops or lower throughput_mibps"
                )
        if not v.mount_point.startswith("/"):
            raise ValidationError(f"{where}: {key}.mount_point {v.mount_point!r} must be an absolute path")
        if not re.match(r"^/[A-Za-z0-9._/-]*$", v.mount_point):
            raise ValidationError(f"{where}: {key}.mount_point {v.mount_point!r} may hold only letters, digits, "
                                  "'.', '_', '-' and '/' (it goes into /etc/fstab)")
        if v.in_other_az not in IN_OTHER_AZ:
            raise ValidationError(f"{where}: {key}.in_other_az {v.in_other_az!r} is not one of {', '.join(IN_OTHER_AZ)}")
        if not 1 <= v.wait_minutes <= 1440:
            raise ValidationError(f"{where}: {key}.wait_minutes must be between 1 and 1440 (got {v.wait_minutes})")


def validate_snapshots(where: str, s: SnapshotSettings) -> None:
    if not s.enabled:
        return
    if s.interval_hours not in DLM_INTERVALS_HOURS:
        raise ValidationError(
            f"{where}: snapshots.interval_hours {s.interval_hours} is not accepted by DLM: use one of "
            f"{', '.join(map(str, DLM_INTERVALS_HOURS))}"
        )
    if not 1 <= s.retain_count <= 1000:
        raise ValidationError(f"{where}: snapshots.retain_count must be between 1 and 1000 (got {s.retain_count})")
    bad = [t for t in s.times if not re.match(r"^([01]\d|2[0-3]):[0-5]\d$", t)]
    if bad or len(s.times) != 1:
        raise ValidationError(
            f"{where}: snapshots.times must hold exactly one UTC start time as hh:mm (got {list(s.times)})"
        )
    if s.fast_restore_availability_zones and not 1 <= s.fast_restore_count <= 1000:
        raise ValidationError(
            f"{where}: snapshots.fast_restore_count must be between 1 and 1000 (got {s.fast_restore_count})"
        )


def instance_role_statements(group_name: str, volumes: Sequence[DataVolumeSettings],
                             key_arns: Optional[Sequence[str]] = None) -> list[dict]:
    """What the boot script may do, each scoped by condition to the group's own volumes and instances.

    - ``ec2:CreateVolume`` only with the request tags ``spotkit:group=<group>`` and ``spotkit:retain=true``;
      ``ec2:CreateTags`` only as part of that call (``ec2:CreateAction``).
    - ``ec2:AttachVolume``: the volume and the instance must both carry ``spotkit:group=<group>``, and the
      caller must use instance-profile credentials (``ec2:SourceInstanceARN`` present). What remains:
      no documented condition key compares AttachVolume's target instance with the caller (``${ec2:SourceInstanceARN}``
      cannot stand as a ``Resource``: IAM's ARN check rejects it, 'Partition "SourceInstanceARN}" is not valid'),
      so an instance may attach a *detached* volume of its group to another running instance of its group in
      the same AZ (EC2 refuses volumes in use). It cannot touch other groups' volumes or instances, nor
      detach or delete anything. DescribeVolumes stays on ``*`` (EC2 Describe* calls take no resource scope).
    - the data volumes' KMS keys (``key_arns``: key ARNs; ``RetainedDataVolumes`` resolves ids and aliases
      with ``data "aws_kms_key"``), only through EC2 (``kms:ViaService``). Never ``*``.
    """
    volume_arn, instance_arn = "arn:aws:ec2:*:*:volume/*", "arn:aws:ec2:*:*:instance/*"
    statements = [
        {"Sid": "FindDataVolumes", "Effect": "Allow", "Action": "ec2:DescribeVolumes", "Resource": "*"},
        {"Sid": "CreateOwnDataVolumes", "Effect": "Allow", "Action": "ec2:CreateVolume", "Resource": volume_arn,
         "Condition": {"StringEquals": {f"aws:RequestTag/{GROUP_TAG}": group_name, f"aws:RequestTag/{RETAIN_TAG}": "true"}}},
        {"Sid": "TagDataVolumesAtCreation", "Effect": "Allow", "Action": "ec2:CreateTags", "Resource": volume_arn,
         "Condition": {"StringEquals": {"ec2:CreateAction": "CreateVolume"}}},
        {"Sid": "AttachOwnDataVolumes", "Effect": "Allow", "Action": "ec2:AttachVolume", "Resource": volume_arn,
         "Condition": {"StringEquals": {f"aws:ResourceTag/{GROUP_TAG}": group_name}}},
        {"Sid": "AttachToOwnGroupInstancesFromAnInstance", "Effect": "Allow", "Action": "ec2:AttachVolume",
         "Resource": instance_arn,
         "Condition": {"StringEquals": {f"aws:ResourceTag/{GROUP_TAG}": group_name},
                       "Null": {"ec2:SourceInstanceARN": "false"}}},
    ]
    if key_arns is None:
        given = sorted({v.kms_key_id for v in volumes if v.kms_key_id})
        bad = [k for k in given if not is_key_arn(k)]
        if bad:
            raise ValidationError(f"data volumes of {group_name!r}: kms_key_id {', '.join(bad)} is not a key ARN; "
                                  "pass key_arns resolved with spotkit.constructs.kms.key_arn (RetainedDataVolumes does)")
        key_arns = given
    keys = sorted(set(key_arns))
    if keys:
        statements.append({
            "Sid": "UseDataVolumeKey", "Effect": "Allow",
            "Action": ["kms:CreateGrant", "kms:Decrypt", "kms:DescribeKey", "kms:GenerateDataKeyWithoutPlaintext",
                       "kms:ReEncryptFrom", "kms:ReEncryptTo"],
            "Resource": keys,
            "Condition": {"StringLike": {"kms:ViaService": "ec2.*.amazonaws.com"}},
        })
    return statements


class SnapshotPolicy(Construct):
    """A DLM lifecycle policy (``aws_dlm_lifecycle_policy``) snapshotting volumes that carry ``target_tags``,
    and the IAM role DLM assumes (AWS's managed service-role policy)."""

    def __init__(self, scope: Construct, id_: str, *, name: str, target_tags: dict[str, str],
                 settings: SnapshotSettings = SnapshotSettings()):
        validate_snapshots(f"SnapshotPolicy {name!r}", settings)
        super().__init__(scope, id_)
        from cdktn_aws.dlm import AwsLifecyclePolicy as DlmLifecyclePolicy
        from cdktn_aws.iam import AwsRole as IamRole, AwsRolePolicyAttachment as IamRolePolicyAttachment

        s = settings
        self.role = IamRole(
            self, "role",
            name_prefix=f"{name}-dlm-"[:38],
            assume_role_policy=assume_role_policy("dlm.amazonaws.com"),
        )
        IamRolePolicyAttachment(self, "service-role", role=self.role.name, policy_arn=DLM_SERVICE_ROLE_POLICY)
        fast = None
        if s.fast_restore_availability_zones:
            fast = DlmLifecyclePolicy.FastRestoreRuleProperty(
                availability_zones=list(s.fast_restore_availability_zones), count=s.fast_restore_count)
        self.policy = DlmLifecyclePolicy(
            self, "policy",
            description=f"spotkit {name} snapshots of retained data volumes"[:500],
            execution_role_arn=self.role.arn,
            state="ENABLED" if s.enabled else "DISABLED",
            policy_details=DlmLifecyclePolicy.PolicyDetailsProperty(
                policy_type="EBS_SNAPSHOT_MANAGEMENT",
                resource_types=["VOLUME"],
                target_tags=dict(target_tags),
                schedule=[DlmLifecyclePolicy.ScheduleProperty(
                    name=f"every-{s.interval_hours}h-keep-{s.retain_count}",
                    create_rule=DlmLifecyclePolicy.CreateRuleProperty(
                        interval=s.interval_hours, interval_unit="HOURS", times=list(s.times)),
                    retain_rule=DlmLifecyclePolicy.PolicyDetailsScheduleRetainRuleProperty(count=s.retain_count),
                    copy_tags=s.copy_tags,
                    tags_to_add={TAG_SNAPSHOT_OF: name},
                    fast_restore_rule=fast,
                )],
            ),
        )


class RetainedDataVolumes(Construct):
    """Data volumes on every instance of a compute group, kept on terminate, re-attached to the next
    instance at boot, snapshotted.

    ``group`` is a ``SpotComputeGroup`` (anything with ``name``, ``tags``, ``add_user_data`` and
    ``add_to_role_policy``). See the module docstring for the tag contract and the boot-time claim.
    """

    def __init__(self, scope: Construct, id_: str, *, group, volumes: Sequence[DataVolumeSettings] = (DataVolumeSettings(),),
                 snapshots: SnapshotSettings = SnapshotSettings()):
        where = f"RetainedDataVolumes {group.name!r}"
        volumes = list(volumes)
        if not volumes:
            raise ValidationError(f"{where}: volumes is empty: give at least one DataVolumeSettings or leave the construct out")
        validate_data_volumes(where, volumes)
        validate_snapshots(where, snapshots)
        super().__init__(scope, id_)
        self.group = group
        self.volumes = volumes
        group_tags = dict(getattr(group, "tags", None) or {GROUP_TAG: group.name})
        given_keys = sorted({v.kms_key_id for v in volumes if v.kms_key_id})
        key_arns = [key_arn(self, f"kms-key-{i}", k) for i, k in enumerate(given_keys)]
        for statement in instance_role_statements(group.name, volumes, key_arns=key_arns):
            group.add_to_role_policy(statement)
        script = claim_script(volumes, group_name=group.name,
                              tags_for=lambda device: {**group_tags, **self.tags_for(group.name, device)})
        group.add_user_data(UserDataPart("data-volumes", script, order=20))
        self.snapshot_policy: Optional[SnapshotPolicy] = None
        if snapshots.enabled:
            self.snapshot_policy = SnapshotPolicy(self, "snapshots", name=group.name,
                                                  target_tags={RETAIN_GROUP_TAG: group.name}, settings=snapshots)

    @staticmethod
    def tags_for(group_name: str, device_name: str) -> dict[str, str]:
        """The tags a retained data volume carries (the contract above)."""
        return {GROUP_TAG: group_name, DEVICE_TAG: device_name, RETAIN_TAG: "true", RETAIN_GROUP_TAG: group_name}


__all__ = [
    "instance_role_statements", "DataVolumeSettings", "SnapshotSettings", "SnapshotPolicy", "RetainedDataVolumes",
    "GROUP_TAG", "DEVICE_TAG", "RETAIN_TAG", "RETAIN_GROUP_TAG",
]
