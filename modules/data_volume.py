"""Data volumes that outlive their instance, and the DLM policy that snapshots them.

Tag contract (the recovery runbooks find and re-attach volumes by these; do not change them):

- ``spotkit:group = <group name>``   the compute group (or standalone instance) the volume belongs to
- ``spotkit:device = <device name>``  the device it was attached as, e.g. ``/dev/sdf``
- ``spotkit:retain = true``           kept on terminate; safe to re-attach to a replacement
- ``spotkit:retain-group = <group>``  the one tag the DLM policy targets (see below)

How the tags get there. A launch template can tag volumes only through
``tag_specifications(resource_type=volume)``, which tags *every* volume of the instance alike (the root
too, which is deleted on terminate), so it cannot say which device a volume is nor mark only data volumes
as retained. ``RetainedDataVolumes`` therefore lets the launch template tag all volumes with
``spotkit:group`` (the compute group already does) and adds a boot-time user-data part that finds each
data volume by its attachment device and tags it with ``spotkit:device``, ``spotkit:retain`` and
``spotkit:retain-group``. The instance role may only call ``ec2:CreateTags`` on volumes that already carry
``spotkit:group=<this group>`` and only for those three keys (least privilege by condition), plus
``ec2:DescribeVolumes`` (which has no resource-level permissions). A standalone instance
(``modules.spot_instance``) creates its data volume as an ``aws_ebs_volume`` and tags it directly.

DLM ORs the target tags of a policy (a volume with *any* of them is snapshotted), so the policy targets
the single tag ``spotkit:retain-group=<group>``, which only this group's retained data volumes carry.
The policy is the only ``aws_dlm_lifecycle_policy`` resource spotkit creates (moto has no DLM: local
deployments leave that resource type out).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Optional, Sequence

from constructs import Construct

from modules.user_data import UserDataPart
from toolkit.errors import ValidationError

GROUP_TAG = "spotkit:group"
DEVICE_TAG = "spotkit:device"
RETAIN_TAG = "spotkit:retain"
RETAIN_GROUP_TAG = "spotkit:retain-group"
DLM_INTERVALS_HOURS = (1, 2, 3, 4, 6, 8, 12, 24)
DLM_SERVICE_ROLE_POLICY = "arn:aws:iam::aws:policy/service-role/AWSDataLifecycleManagerServiceRole"
_DEVICE = re.compile(r"^/dev/(sd[f-p]|xvd[f-p])$")


@dataclass(frozen=True)
class DataVolumeSettings:
    """One retained data volume.

    - ``device_name``: /dev/sdf../dev/sdp (or xvdf..xvdp). Default /dev/sdf.
    - ``size_gib``: 1-16384. Default 200.
    - ``volume_type``: gp3 (default) or gp2/io2...; ``iops`` (3000-16000) and ``throughput_mibps`` (125-1000)
      apply to gp3. Defaults 3000 and 250.
    - ``kms_key_id``: key for encryption (always on). Default: the account's default EBS key.
    - ``mount_point``: where the boot script mounts it (formats only a blank volume). Default /mnt/data.
    """

    device_name: str = "/dev/sdf"
    size_gib: int = 200
    volume_type: str = "gp3"
    iops: int = 3000
    throughput_mibps: int = 250
    kms_key_id: Optional[str] = None
    mount_point: str = "/mnt/data"


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


def launch_template_block_device(v: DataVolumeSettings) -> dict:
    """Raw snake_case Terraform for a launch-template block device kept on terminate."""
    ebs: dict = {
        "volume_size": v.size_gib,
        "volume_type": v.volume_type,
        "encrypted": "true",
        "delete_on_termination": "false",
    }
    if v.volume_type == "gp3":
        ebs["iops"] = v.iops
        ebs["throughput"] = v.throughput_mibps
    if v.kms_key_id:
        ebs["kms_key_id"] = v.kms_key_id
    return {"device_name": v.device_name, "ebs": ebs}


def mount_script(volumes: Sequence[DataVolumeSettings], *, group_name: str, tag: bool) -> str:
    """Boot script: (tag each data volume with its device), then mount it; formats only a blank volume."""
    lines = [
        'TOKEN=$(curl -sS -X PUT http://169.254.169.254/latest/api/token -H "X-aws-ec2-metadata-token-ttl-seconds: 300")',
        'IID=$(curl -sS -H "X-aws-ec2-metadata-token: $TOKEN" http://169.254.169.254/latest/meta-data/instance-id)',
        'REGION=$(curl -sS -H "X-aws-ec2-metadata-token: $TOKEN" http://169.254.169.254/latest/meta-data/placement/region)',
    ]
    for v in volumes:
        dev, mnt = v.device_name, v.mount_point
        lines += [
            f"# data volume {dev} -> {mnt} (kept on terminate)",
            "VOL=''",
            "for i in $(seq 1 30); do",
            f'  VOL=$(aws ec2 describe-volumes --region "$REGION" --filters Name=attachment.instance-id,Values="$IID" '
            f'Name=attachment.device,Values={dev} --query "Volumes[0].VolumeId" --output text 2>/dev/null)',
            '  [ -n "$VOL" ] && [ "$VOL" != "None" ] && break; sleep 5',
            "done",
        ]
        if tag:
            lines.append(
                f'aws ec2 create-tags --region "$REGION" --resources "$VOL" --tags Key={DEVICE_TAG},Value={dev} '
                f"Key={RETAIN_TAG},Value=true Key={RETAIN_GROUP_TAG},Value={group_name} "
                '|| echo "spotkit: could not tag $VOL"'
            )
        lines += [
            f'DEV=/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_${{VOL//-/}}; [ -e "$DEV" ] || DEV={dev}',
            'for i in $(seq 1 30); do [ -e "$DEV" ] && break; sleep 2; done',
            'blkid "$DEV" >/dev/null 2>&1 || mkfs.xfs "$DEV"  # formats only a blank volume, never existing data',
            f"mkdir -p {mnt}",
            f'UUID=$(blkid -s UUID -o value "$DEV"); grep -q "$UUID" /etc/fstab || '
            f'echo "UUID=$UUID {mnt} xfs defaults,nofail 0 2" >> /etc/fstab',
            f"mountpoint -q {mnt} || mount {mnt}",
        ]
    first = volumes[0].mount_point if volumes else "/mnt/data"
    lines += [
        f'echo "SPOTKIT_DATA_DIR={first}" >> /etc/environment',
        f'echo "export SPOTKIT_DATA_DIR={first}" > /etc/profile.d/spotkit-data.sh',
    ]
    return "\n".join(lines)


class SnapshotPolicy(Construct):
    """A DLM lifecycle policy (``aws_dlm_lifecycle_policy``) snapshotting volumes that carry ``target_tags``,
    and the IAM role DLM assumes (AWS's managed service-role policy)."""

    def __init__(self, scope: Construct, id_: str, *, name: str, target_tags: dict[str, str],
                 settings: SnapshotSettings = SnapshotSettings()):
        validate_snapshots(f"SnapshotPolicy {name!r}", settings)
        super().__init__(scope, id_)
        from cdktn_provider_aws.dlm_lifecycle_policy import (
            DlmLifecyclePolicy,
            DlmLifecyclePolicyPolicyDetails,
            DlmLifecyclePolicyPolicyDetailsSchedule,
            DlmLifecyclePolicyPolicyDetailsScheduleCreateRule,
            DlmLifecyclePolicyPolicyDetailsScheduleFastRestoreRule,
            DlmLifecyclePolicyPolicyDetailsScheduleRetainRule,
        )
        from cdktn_provider_aws.iam_role import IamRole
        from cdktn_provider_aws.iam_role_policy_attachment import IamRolePolicyAttachment

        s = settings
        self.role = IamRole(
            self, "role",
            name_prefix=f"{name}-dlm-"[:38],
            assume_role_policy=json.dumps({
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Principal": {"Service": "dlm.amazonaws.com"},
                               "Action": "sts:AssumeRole"}],
            }),
        )
        IamRolePolicyAttachment(self, "service-role", role=self.role.name, policy_arn=DLM_SERVICE_ROLE_POLICY)
        fast = None
        if s.fast_restore_availability_zones:
            fast = DlmLifecyclePolicyPolicyDetailsScheduleFastRestoreRule(
                availability_zones=list(s.fast_restore_availability_zones), count=s.fast_restore_count)
        self.policy = DlmLifecyclePolicy(
            self, "policy",
            description=f"spotkit {name} snapshots of retained data volumes"[:500],
            execution_role_arn=self.role.arn,
            state="ENABLED" if s.enabled else "DISABLED",
            policy_details=DlmLifecyclePolicyPolicyDetails(
                policy_type="EBS_SNAPSHOT_MANAGEMENT",
                resource_types=["VOLUME"],
                target_tags=dict(target_tags),
                schedule=[DlmLifecyclePolicyPolicyDetailsSchedule(
                    name=f"every-{s.interval_hours}h-keep-{s.retain_count}",
                    create_rule=DlmLifecyclePolicyPolicyDetailsScheduleCreateRule(
                        interval=s.interval_hours, interval_unit="HOURS", times=list(s.times)),
                    retain_rule=DlmLifecyclePolicyPolicyDetailsScheduleRetainRule(count=s.retain_count),
                    copy_tags=s.copy_tags,
                    tags_to_add={"spotkit:snapshot-of": name},
                    fast_restore_rule=fast,
                )],
            ),
        )


class RetainedDataVolumes(Construct):
    """Data volumes on every instance of a compute group, kept on terminate, tagged at boot, snapshotted.

    ``group`` is a ``SpotComputeGroup`` (anything with ``name``, ``add_launch_template_block_device``,
    ``add_user_data`` and ``add_to_role_policy``). See the module docstring for the tag contract.
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
        for v in volumes:
            group.add_launch_template_block_device(launch_template_block_device(v))
        group.add_to_role_policy({
            "Sid": "TagOwnDataVolumes",
            "Effect": "Allow",
            "Action": "ec2:CreateTags",
            "Resource": "arn:aws:ec2:*:*:volume/*",
            "Condition": {
                "StringEquals": {f"aws:ResourceTag/{GROUP_TAG}": group.name},
                "ForAllValues:StringEquals": {"aws:TagKeys": [DEVICE_TAG, RETAIN_TAG, RETAIN_GROUP_TAG]},
            },
        })
        group.add_to_role_policy({
            "Sid": "FindOwnDataVolumes",
            "Effect": "Allow",
            "Action": "ec2:DescribeVolumes",
            "Resource": "*",
        })
        group.add_user_data(UserDataPart("data-volumes", mount_script(volumes, group_name=group.name, tag=True), order=20))
        self.snapshot_policy: Optional[SnapshotPolicy] = None
        if snapshots.enabled:
            self.snapshot_policy = SnapshotPolicy(self, "snapshots", name=group.name,
                                                  target_tags={RETAIN_GROUP_TAG: group.name}, settings=snapshots)

    @staticmethod
    def tags_for(group_name: str, device_name: str) -> dict[str, str]:
        """The tags a retained data volume carries (the contract above)."""
        return {GROUP_TAG: group_name, DEVICE_TAG: device_name, RETAIN_TAG: "true", RETAIN_GROUP_TAG: group_name}


__all__ = [
    "DataVolumeSettings", "SnapshotSettings", "SnapshotPolicy", "RetainedDataVolumes",
    "GROUP_TAG", "DEVICE_TAG", "RETAIN_TAG", "RETAIN_GROUP_TAG",
]
