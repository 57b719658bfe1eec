"""Retained data volumes and their DLM snapshot policy: synthesized values and every rule (exact messages)."""

from __future__ import annotations

import json

import pytest

from spotkit.constructs.compute_group import SpotComputeGroup
from spotkit.constructs.data_volume import (
    DataVolumeSettings,
    RetainedDataVolumes,
    SnapshotSettings,
    instance_role_statements,
    validate_data_volumes,
    validate_snapshots,
)
from tests.support.synth import local_value, one, resources, synth_construct
from spotkit.errors import ValidationError

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


def test_launch_template_carries_no_data_volume(group_with_volume):
    lt = one(group_with_volume, "aws_launch_template")
    # THEN only the root volume comes from the launch template (a template volume would be new on every
    # instance, so the retained one could never go back as the same device)
    assert [d["device_name"] for d in lt["block_device_mappings"]] == ["/dev/xvda"]
    assert lt["block_device_mappings"][0]["ebs"]["delete_on_termination"] == "true"


def test_boot_script_claims_or_creates_the_volume_with_the_tag_contract(group_with_volume):
    script = local_value(group_with_volume, "fleet_fleet_user_data")
    # THEN the boot part claims /dev/sdg for group fleet, waits for a copy when its volume is in another AZ,
    # and otherwise creates the volume as configured, encrypted, with the whole tag contract at creation
    tags = ('[{"ResourceType":"volume","Tags":[{"Key":"spotkit:group","Value":"fleet"},'
            '{"Key":"spotkit:managed","Value":"true"},{"Key":"spotkit:device","Value":"/dev/sdg"},'
            '{"Key":"spotkit:retain","Value":"true"},{"Key":"spotkit:retain-group","Value":"fleet"}]}]')
    assert (f"spotkit_data_volume fleet /dev/sdg /data wait 120 --size 500 --volume-type gp3 --encrypted "
            f"--iops 6000 --throughput 500 --tag-specifications '{tags}'") in script
    # AND it formats only a blank volume and mounts it with nofail
    assert 'blkid "$path" >/dev/null 2>&1 || mkfs.xfs "$path"' in script
    assert '$mnt xfs defaults,nofail 0 2' in script
    # AND bash's ${...} is escaped for Terraform
    assert "$${vol//-/}" in script and "${vol//-/}" not in script.replace("$${", "")


def test_instance_role_may_only_create_tag_and_attach_its_own_group_volumes(group_with_volume):
    policy = json.loads(one(group_with_volume, "aws_iam_role_policy")["policy"])
    by_sid = {s.get("Sid"): s for s in policy["Statement"]}
    # THEN creating a volume needs the group's request tags, tagging happens only in that call,
    # and attaching needs the group tag on both the volume and the instance
    assert by_sid["CreateOwnDataVolumes"]["Action"] == "ec2:CreateVolume"
    assert by_sid["CreateOwnDataVolumes"]["Condition"] == {
        "StringEquals": {"aws:RequestTag/spotkit:group": "fleet", "aws:RequestTag/spotkit:retain": "true"}}
    assert by_sid["TagDataVolumesAtCreation"]["Condition"] == {"StringEquals": {"ec2:CreateAction": "CreateVolume"}}
    assert by_sid["AttachOwnDataVolumes"]["Resource"] == "arn:aws:ec2:*:*:volume/*"
    assert by_sid["AttachOwnDataVolumes"]["Condition"] == {"StringEquals": {"aws:ResourceTag/spotkit:group": "fleet"}}
    # (the instance side also needs instance-profile credentials: ec2:SourceInstanceARN present)
    assert by_sid["AttachToOwnGroupInstancesFromAnInstance"]["Resource"] == "arn:aws:ec2:*:*:instance/*"
    assert by_sid["AttachToOwnGroupInstancesFromAnInstance"]["Condition"] == {
        "StringEquals": {"aws:ResourceTag/spotkit:group": "fleet"}, "Null": {"ec2:SourceInstanceARN": "false"}}
    attach = [st for st in policy["Statement"] if "ec2:AttachVolume" in st["Action"]]
    assert len(attach) == 2 and all(st["Condition"]["StringEquals"] == {"aws:ResourceTag/spotkit:group": "fleet"}
                                    for st in attach)
    # AND nothing may detach or delete a volume, and no KMS rights without a key
    actions = {a for st in policy["Statement"] for a in ([st["Action"]] if isinstance(st["Action"], str) else st["Action"])}
    assert not actions & {"ec2:DetachVolume", "ec2:DeleteVolume", "ec2:ModifyVolume"}
    assert "UseDataVolumeKey" not in by_sid


def test_provisioned_iops_volumes_are_created_with_their_iops_and_no_throughput():
    from spotkit.constructs.data_volume_boot import create_volume_args

    args = create_volume_args(size_gib=100, volume_type="io2", iops=20000, throughput_mibps=250, kms_key_id=None, tags={})
    assert args[:7] == ["--size", "100", "--volume-type", "io2", "--encrypted", "--iops", "20000"]
    assert "--throughput" not in args


def test_a_customer_key_adds_its_use_through_ec2_only():
    statements = instance_role_statements("fleet", [DataVolumeSettings(kms_key_id="arn:aws:kms:us-east-1:1:key/k")])
    (kms,) = [s for s in statements if s["Sid"] == "UseDataVolumeKey"]
    assert kms["Resource"] == ["arn:aws:kms:us-east-1:1:key/k"]
    assert "kms:CreateGrant" in kms["Action"]
    assert kms["Condition"] == {"StringLike": {"kms:ViaService": "ec2.*.amazonaws.com"}}
    # AND a key given by alias is never widened to "*": the bare function refuses it ...
    with pytest.raises(ValidationError) as err:
        instance_role_statements("fleet", [DataVolumeSettings(kms_key_id="alias/data")])
    assert str(err.value) == ("data volumes of 'fleet': kms_key_id alias/data is not a key ARN; pass key_arns "
                              "resolved with spotkit.constructs.kms.key_arn (RetainedDataVolumes does)")


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
    (DataVolumeSettings(mount_point="/my data"),
     "X: data_volumes[0].mount_point '/my data' may hold only letters, digits, '.', '_', '-' and '/' (it goes into /etc/fstab)"),
    (DataVolumeSettings(volume_type="gp4"), "X: data_volumes[0].volume_type 'gp4' is not one of gp3, gp2, io2, io1, st1, sc1"),
    (DataVolumeSettings(volume_type="io2", iops=50), "X: data_volumes[0].iops must be between 100 and 256000 for io2 (got 50)"),
    (DataVolumeSettings(in_other_az="copy"), "X: data_volumes[0].in_other_az 'copy' is not one of wait, create"),
    (DataVolumeSettings(wait_minutes=0), "X: data_volumes[0].wait_minutes must be between 1 and 1440 (got 0)"),
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
