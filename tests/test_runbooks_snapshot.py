"""``recover snapshot`` against the moto server: restore the newest snapshot next to an instance, resumably."""

from __future__ import annotations

import pytest

from tests.support.spot_group import SpotGroupWorld
from spotkit.errors import ToolkitError
from spotkit.runbooks.base import RunContext
from spotkit.runbooks.snapshot import restore_snapshot


class Killed(Exception):
    pass


def ctx(tmp_path, **kw) -> RunContext:
    return RunContext(journal_dir=tmp_path / "journal", wait_delay=0.05, wait_attempts=40, **kw)


def tags(resource: dict) -> dict:
    return {t["Key"]: t["Value"] for t in resource.get("Tags", [])}


def _age(snapshot_id: str, hours: int) -> None:
    """Backdate a snapshot in the emulator (test setup, not the code under test)."""
    import datetime as dt

    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ec2.models import ec2_backends

    snap = ec2_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].snapshots[snapshot_id]
    snap.start_time = snap.start_time - dt.timedelta(hours=hours)


def snapshot_of(world: SpotGroupWorld, volume_id: str, label: str) -> str:
    return world.ec2.create_snapshot(VolumeId=volume_id, Description=label, TagSpecifications=[{
        "ResourceType": "snapshot", "Tags": [{"Key": "spotkit:group", "Value": world.group},
                                             {"Key": "spotkit:device", "Value": world.device},
                                             {"Key": "Name", "Value": label}]}])["SnapshotId"]


@pytest.fixture()
def lost_volume_world(aws):
    """A group whose instance and data volume are gone, with two snapshots of the volume (older, newer)."""
    world = SpotGroupWorld.create(aws, size=1)
    (lost,) = world.instance_ids()
    data = world.volumes[lost]
    older = snapshot_of(world, data, "older")
    newer = snapshot_of(world, data, "newer")
    _age(older, hours=6)  # both were made this second; AWS would have hours between scheduled snapshots
    world.asg.update_auto_scaling_group(AutoScalingGroupName=world.group, VPCZoneIdentifier=world.subnets["us-east-1b"])
    replacement = world.interrupt(lost)
    return world, replacement, older, newer


def test_newest_snapshot_is_restored_next_to_the_instance_and_attached(lost_volume_world, tmp_path):
    # GIVEN a replacement in us-east-1b and two snapshots of the device
    world, replacement, older, newer = lost_volume_world
    # WHEN the snapshot runbook runs
    result = restore_snapshot(world.ec2, "training", "/dev/sdf", ctx=ctx(tmp_path))
    # THEN the newest snapshot becomes a volume in the instance's AZ, attached as /dev/sdf
    assert (result.snapshot_id, result.instance_id, result.status) == (newer, replacement, "attached")
    vol = world.volume(result.volume_id)
    assert (vol["SnapshotId"], vol["AvailabilityZone"]) == (newer, "us-east-1b")
    assert world.devices(replacement)["/dev/sdf"] == result.volume_id
    assert tags(vol) == {"spotkit:group": "training", "spotkit:device": "/dev/sdf", "Name": "newer",
                         "spotkit:origin-snapshot": newer, "spotkit:restored-for": replacement}
    assert [m["id"] for m in result.made] == [result.volume_id]


def test_dry_run_restores_nothing(lost_volume_world, tmp_path):
    world, replacement, _older, newer = lost_volume_world
    # WHEN run dry
    result = restore_snapshot(world.ec2, "training", "/dev/sdf", ctx=ctx(tmp_path, dry_run=True))
    # THEN it says what it would do and made no volume
    assert [a.description for a in result.actions] == [
        f"would create a volume from {newer} in us-east-1b for {replacement}",
        f"would attach the new volume to {replacement} as /dev/sdf"]
    assert len(world.all_volumes()) == 1


@pytest.mark.parametrize("step", ["volume-created", "attach-called"])
def test_killed_then_rerun_restores_once(lost_volume_world, tmp_path, step):
    # GIVEN a restore killed at a step
    world, replacement, _older, newer = lost_volume_world

    def hook(name):
        if name == step:
            raise Killed(name)

    with pytest.raises(Killed):
        restore_snapshot(world.ec2, "training", "/dev/sdf", ctx=ctx(tmp_path, hook=hook))
    # WHEN it runs again
    result = restore_snapshot(world.ec2, "training", "/dev/sdf", ctx=ctx(tmp_path))
    # THEN one restored volume exists, attached to the same instance, and the original volume is untouched
    restored = [v for v in world.all_volumes() if tags(v).get("spotkit:origin-snapshot") == newer]
    assert [v["VolumeId"] for v in restored] == [result.volume_id]
    assert world.devices(replacement)["/dev/sdf"] == result.volume_id
    assert len(world.all_volumes()) == 2
    # AND a third run changes nothing
    third = restore_snapshot(world.ec2, "training", "/dev/sdf", ctx=ctx(tmp_path))
    assert (third.status, third.volume_id, third.actions) == ("attached", result.volume_id, [])


def test_no_snapshot_says_what_to_check(aws, tmp_path):
    world = SpotGroupWorld.create(aws, size=1)
    with pytest.raises(ToolkitError) as err:
        restore_snapshot(world.ec2, "training", "/dev/sdg", ctx=ctx(tmp_path))
    assert err.value.message == "no completed snapshot of /dev/sdg for group 'training'"
    assert err.value.hint == ("check the device name and the snapshot schedule of the group "
                              "(spotkit status --group training)")


def test_instance_that_has_the_device_is_refused(aws, tmp_path):
    # GIVEN an instance that still has its /dev/sdf and a snapshot of it
    world = SpotGroupWorld.create(aws, size=1)
    (iid,) = world.instance_ids()
    snapshot_of(world, world.volumes[iid], "s")
    # WHEN asked to restore onto it
    with pytest.raises(ToolkitError) as err:
        restore_snapshot(world.ec2, "training", "/dev/sdf", iid, ctx=ctx(tmp_path))
    # THEN it refuses, naming the attached volume
    assert err.value.message == f"instance {iid} already has /dev/sdf attached ({world.volumes[iid]})"
