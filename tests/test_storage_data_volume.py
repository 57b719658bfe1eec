"""Retained data volumes and their DLM snapshot policy: synthesized values and every rule (exact messages)."""

from __future__ import annotations

import json

import pytest

from modules.compute_group import SpotComputeGroup
from modules.data_volume import (
    DataVolumeSettings,
    RetainedDataVolumes,
    SnapshotSettings,
    validate_data_volumes,
    validate_snapshots,
)
from tests.support.synth import local_value, one, resources, synth_construct
from toolkit.errors import ValidationError

SNAPSHOTS = SnapshotSettings(interval_hours=6, retain_count=28, times=("01:30",),
                             fast_restore_availability_zones=("us-east-1a", "us-east-1b"), fast_restore_count=2)


@pytest.fixture(scope="module")
def group_with_volume():
    # GIVEN a compute group with a 500 GiB gp3 data volume at /dev/sdg and a 6-hourly snapshot schedule
    def build(stack):
        group = SpotComputeGroup(stack, "fleet", name="fleet", vpc_id="vpc-1", subnet_ids=["subnet-a", "subnet-b"])
        RetainedDataVolumes(stack, "data", group=group,
                            volumes=[DataVolumeSettings(device_name="/dev/sdg", size_gib=500, iops=6000,
                                                        throughput_mibps=500, mount_point="/data")],
                            snapshots=SNAPSHOTS)
        return group

    # WHEN it is synthesized
    doc, _ = synth_construct(build)
    return doc


def test_data_volume_is_kept_on_terminate_encrypted_gp3(group_with_volume):
    lt = one(group_with_volume, "aws_launch_template")
    # THEN the second block device is the data volume, not deleted on termination
    assert lt["block_device_mappings"][1] == {
        "device_name": "/dev/sdg",
        "ebs": {"volume_size": 500, "volume_type": "gp3", "encrypted": "true", "delete_on_termination": "false",
                "iops": 6000, "throughput": 500},
    }
    # AND the root volume still goes with the instance
    assert lt["block_device_mappings"][0]["ebs"]["delete_on_termination"] == "true"
    # AND every volume of the instance carries the group tag at launch (what the tagging permission keys on)
    volume_tags = [t for t in lt["tag_specifications"] if t["resource_type"] == "volume"][0]["tags"]
    assert volume_tags["spotkit:group"] == "fleet"


def test_boot_script_tags_the_data_volume_with_its_device(group_with_volume):
    script = local_value(group_with_volume, "fleet_fleet_user_data")
    # THEN the boot script tags the volume found at /dev/sdg with the runbooks' tag contract
    assert ("aws ec2 create-tags --region \"$REGION\" --resources \"$VOL\" --tags Key=spotkit:device,Value=/dev/sdg "
            "Key=spotkit:retain,Value=true Key=spotkit:retain-group,Value=fleet") in script
    assert "Name=attachment.device,Values=/dev/sdg" in script
    # AND it formats only a blank volume and mounts it with nofail
    assert 'blkid "$DEV" >/dev/null 2>&1 || mkfs.xfs "$DEV"' in script
    assert '/data xfs defaults,nofail 0 2' in script
    # AND bash's ${VOL//-/} is escaped for Terraform
    assert "$${VOL//-/}" in script


def test_tagging_permission_is_scoped_by_condition(group_with_volume):
    policy = json.loads(one(group_with_volume, "aws_iam_role_policy")["policy"])
    tag = [s for s in policy["Statement"] if s.get("Sid") == "TagOwnDataVolumes"][0]
    # THEN the role may only add the three contract keys to volumes of its own group
    assert tag["Action"] == "ec2:CreateTags"
    assert tag["Resource"] == "arn:aws:ec2:*:*:volume/*"
    assert tag["Condition"] == {
        "StringEquals": {"aws:ResourceTag/spotkit:group": "fleet"},
        "ForAllValues:StringEquals": {"aws:TagKeys": ["spotkit:device", "spotkit:retain", "spotkit:retain-group"]},
    }


def test_dlm_policy_schedule_and_single_target_tag(group_with_volume):
    dlm = one(group_with_volume, "aws_dlm_lifecycle_policy")
    details = dlm["policy_details"]
    # THEN it snapshots only volumes tagged spotkit:retain-group=fleet (DLM ORs target tags, so only one)
    assert details["resource_types"] == ["VOLUME"]
    assert details["target_tags"] == {"spotkit:retain-group": "fleet"}
    (schedule,) = details["schedule"]
    assert schedule["create_rule"] == {"interval": 6, "interval_unit": "HOURS", "times": ["01:30"]}
    assert schedule["retain_rule"] == {"count": 28}
    assert schedule["copy_tags"] is True
    assert schedule["fast_restore_rule"] == {"availability_zones": ["us-east-1a", "us-east-1b"], "count": 2}
    assert dlm["state"] == "ENABLED"


def test_dlm_role_is_assumed_by_dlm_with_the_service_policy(group_with_volume):
    dlm = one(group_with_volume, "aws_dlm_lifecycle_policy")
    roles = resources(group_with_volume, "aws_iam_role")
    role_id = dlm["execution_role_arn"].split(".")[1]
    trust = json.loads(roles[role_id]["assume_role_policy"])
    assert trust["Statement"][0]["Principal"] == {"Service": "dlm.amazonaws.com"}
    attached = [a for a in resources(group_with_volume, "aws_iam_role_policy_attachment").values()
                if a["role"] == f"${{aws_iam_role.{role_id}.name}}"]
    assert [a["policy_arn"] for a in attached] == ["arn:aws:iam::aws:policy/service-role/AWSDataLifecycleManagerServiceRole"]


def test_tags_for_is_the_contract():
    assert RetainedDataVolumes.tags_for("g", "/dev/sdf") == {
        "spotkit:group": "g", "spotkit:device": "/dev/sdf", "spotkit:retain": "true", "spotkit:retain-group": "g"}


# --- rules, exact messages -------------------------------------------------------------------


def _raises(fn, message):
    with pytest.raises(ValidationError) as err:
        fn()
    assert str(err.value) == message


@pytest.mark.parametrize("volume, message", [
    (DataVolumeSettings(device_name="/dev/xvda"),
     "X: data_volumes[0].device_name '/dev/xvda' is not a data-volume device: use /dev/sdf to /dev/sdp"),
    (DataVolumeSettings(size_gib=0), "X: data_volumes[0].size_gib must be between 1 and 16384 (got 0)"),
    (DataVolumeSettings(iops=2000), "X: data_volumes[0].iops must be between 3000 and 16000 for gp3 (got 2000)"),
    (DataVolumeSettings(throughput_mibps=100),
     "X: data_volumes[0].throughput_mibps must be between 125 and 1000 for gp3 (got 100)"),
    (DataVolumeSettings(iops=3000, throughput_mibps=1000),
     "X: data_volumes[0].throughput_mibps (1000) needs iops of at least 4000 (gp3 allows 0.25 MiB/s per IOPS): "
     "raise iops or lower throughput_mibps"),
    (DataVolumeSettings(mount_point="data"), "X: data_volumes[0].mount_point 'data' must be an absolute path"),
])
def test_data_volume_rules(volume, message):
    _raises(lambda: validate_data_volumes("X", [volume]), message)


def test_rule_device_used_twice():
    _raises(lambda: validate_data_volumes("X", [DataVolumeSettings(), DataVolumeSettings()]),
            "X: data_volumes[1].device_name '/dev/sdf' is used twice: give each volume its own device")


@pytest.mark.parametrize("snapshots, message", [
    (SnapshotSettings(interval_hours=5),
     "X: snapshots.interval_hours 5 is not accepted by DLM: use one of 1, 2, 3, 4, 6, 8, 12, 24"),
    (SnapshotSettings(retain_count=0), "X: snapshots.retain_count must be between 1 and 1000 (got 0)"),
    (SnapshotSettings(times=("3am",)), "X: snapshots.times must hold exactly one UTC start time as hh:mm (got ['3am'])"),
    (SnapshotSettings(fast_restore_availability_zones=("us-east-1a",), fast_restore_count=0),
     "X: snapshots.fast_restore_count must be between 1 and 1000 (got 0)"),
])
def test_snapshot_rules(snapshots, message):
    _raises(lambda: validate_snapshots("X", snapshots), message)


def test_disabled_snapshots_skip_the_rules():
    validate_snapshots("X", SnapshotSettings(enabled=False, interval_hours=5))


def test_rule_empty_volume_list_is_refused_before_any_resource():
    class FakeGroup:
        name = "fleet"

    _raises(lambda: RetainedDataVolumes(None, "data", group=FakeGroup(), volumes=[]),
            "RetainedDataVolumes 'fleet': volumes is empty: give at least one DataVolumeSettings or leave the construct out")
