"""The data-volume boot part, run for real: bash and the AWS CLI against the moto server, IMDS from the
emulator (tests/support/boot_part.py swaps only the mount and /etc writes for recorders).

A new instance of a group re-attaches the group's retained volume waiting in its AZ, or creates one with
the tag contract; it never takes a volume in use, a superseded one, another group's or another device's;
a volume waiting only in another AZ is left to `recover volumes`, and the boot waits and mounts its copy.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from spotkit.constructs.compute_group import SpotComputeGroup
from spotkit.constructs.data_volume import DataVolumeSettings, RetainedDataVolumes, SnapshotSettings
from tests.support.boot_part import run_boot_part, user_data_part
from tests.support.spot_group import SpotGroupWorld
from tests.support.synth import local_value, synth_construct
from spotkit.runbooks.base import RunContext
from spotkit.runbooks.volumes import recover_volumes

GROUP = "training"  # SpotGroupWorld's group name
VOLUME = dict(device_name="/dev/sdf", size_gib=50, iops=4000, throughput_mibps=300, mount_point="/data", wait_minutes=1)


def boot_part(**overrides) -> str:
    def build(stack):
        group = SpotComputeGroup(stack, "fleet", name=GROUP, vpc_id="vpc-1", subnet_ids=["subnet-a", "subnet-b"])
        RetainedDataVolumes(stack, "data", group=group, volumes=[DataVolumeSettings(**{**VOLUME, **overrides})],
                            snapshots=SnapshotSettings())
    doc, _ = synth_construct(build)
    return user_data_part(local_value(doc, "fleet_training_user_data"), "data-volumes")


@pytest.fixture(scope="module")
def part() -> str:
    return boot_part()


def tags(resource: dict) -> dict:
    return {t["Key"]: t["Value"] for t in resource.get("Tags", [])}


def boot(world: SpotGroupWorld, part: str, instance_id: str, tmp_path, name: str = "boot"):
    return run_boot_part(part, endpoint=world.ec2.meta.endpoint_url, instance=world.instance(instance_id),
                         workdir=tmp_path / name)


def retained(world: SpotGroupWorld, az: str, device: str = "/dev/sdf", group: str = GROUP, **extra) -> str:
    t = {"spotkit:group": group, "spotkit:device": device, "spotkit:retain": "true", **extra}
    return world.ec2.create_volume(AvailabilityZone=az, Size=20, VolumeType="gp3", TagSpecifications=[{
        "ResourceType": "volume", "Tags": [{"Key": k, "Value": v} for k, v in t.items()]}])["VolumeId"]


def test_first_instance_creates_its_retained_volume_with_the_tag_contract(aws, part, tmp_path):
    # GIVEN a group's first instance and no retained volume anywhere
    world = SpotGroupWorld.create(aws, size=1, with_volumes=False)
    (iid,) = world.instance_ids()
    az = world.instance_az(iid)
    # WHEN its boot part runs
    ran = boot(world, part, iid, tmp_path)
    # THEN one encrypted gp3 volume was made in its AZ, as specified, attached as /dev/sdf and mounted
    assert ran.returncode == 0, ran.output
    (vol,) = world.all_volumes()
    assert (vol["AvailabilityZone"], vol["Size"], vol["VolumeType"], vol["Iops"], vol["Throughput"], vol["Encrypted"]) \
        == (az, 50, "gp3", 4000, 300, True)
    assert tags(vol) == {"spotkit:group": GROUP, "spotkit:managed": "true", "spotkit:device": "/dev/sdf",
                         "spotkit:retain": "true", "spotkit:retain-group": GROUP}
    assert world.devices(iid)["/dev/sdf"] == vol["VolumeId"]
    assert ran.calls == [f"mount {vol['VolumeId']} /dev/sdf /data", "data-dir /data"]
    # AND run again (by hand), it keeps that volume and makes no second one
    again = boot(world, part, iid, tmp_path, "again")
    assert again.returncode == 0, again.output
    assert [v["VolumeId"] for v in world.all_volumes()] == [vol["VolumeId"]]
    assert again.calls[0] == f"mount {vol['VolumeId']} /dev/sdf /data"


def test_replacement_reattaches_the_waiting_volume_of_its_az_and_nothing_else(aws, part, tmp_path):
    # GIVEN a group whose instance had a retained /dev/sdf volume, and decoys of every kind in the same AZ
    world = SpotGroupWorld.create(aws, size=1)
    (lost,) = world.instance_ids()
    data, az = world.volumes[lost], world.instance_az(lost)
    other_group = retained(world, az, group="other")
    other_device = retained(world, az, device="/dev/sdg")
    superseded = retained(world, az)
    retained(world, "us-east-1b", **{"spotkit:origin-volume": superseded})  # recover volumes copied it away
    # WHEN spot reclaims the instance and the replacement boots
    replacement = world.interrupt(lost)
    ran = boot(world, part, replacement, tmp_path)
    # THEN the replacement holds the same volume as /dev/sdf, mounted; nothing was created
    assert ran.returncode == 0, ran.output
    assert world.devices(replacement)["/dev/sdf"] == data
    assert ran.calls[0] == f"mount {data} /dev/sdf /data"
    assert len(world.all_volumes()) == 4  # data, the /dev/sdg one, the superseded one and its copy
    # AND the decoys were left alone, still waiting
    for vol in (other_group, other_device, superseded):
        assert world.volume(vol)["State"] == "available"


def test_two_replacements_booting_at_once_share_out_two_waiting_volumes(aws, part, tmp_path):
    # GIVEN a group of two whose instances were both reclaimed, leaving two retained volumes waiting
    world = SpotGroupWorld.create(aws, size=2)
    first, second = world.instance_ids()
    kept = {world.volumes[first], world.volumes[second]}
    replacements = [world.interrupt(first)]
    replacements.append(world.interrupt(second))
    # WHEN both replacements boot at the same moment (both see the same newest volume first; EC2, and the
    # emulator's AttachVolume extension, let only one attach it)
    with ThreadPoolExecutor(2) as pool:
        runs = list(pool.map(lambda n: boot(world, part, replacements[n], tmp_path, f"boot-{n}"), range(2)))
    # THEN each holds one of the two waiting volumes, mounted, and none was created
    assert [r.returncode for r in runs] == [0, 0], [r.output for r in runs]
    got = [world.devices(iid)["/dev/sdf"] for iid in replacements]
    assert set(got) == kept
    assert [r.calls[0] for r in runs] == [f"mount {v} /dev/sdf /data" for v in got]
    assert len(world.all_volumes()) == 2


def test_volume_waiting_only_in_another_az_is_left_to_recover_volumes_then_mounted(aws, part, tmp_path):
    # GIVEN a reclaimed instance whose retained volume is in us-east-1a, and a replacement in us-east-1b
    world = SpotGroupWorld.create(aws, size=1)
    (lost,) = world.instance_ids()
    data = world.volumes[lost]
    world.move_to("us-east-1b")
    replacement = world.interrupt(lost)
    assert world.instance_az(replacement) == "us-east-1b"
    # WHEN the replacement boots
    ran = boot(world, part, replacement, tmp_path)
    # THEN it makes no empty volume, says what to run, and waits in the background
    assert ran.returncode == 0, ran.output
    assert f"run 'spotkit recover volumes --group {GROUP}' to copy one here" in ran.output
    assert "/dev/sdf" not in world.devices(replacement)
    assert [v["VolumeId"] for v in world.all_volumes()] == [data]
    # AND when recover volumes copies the volume across, the waiting boot mounts the copy
    result = recover_volumes(world.ec2, GROUP, RunContext(journal_dir=tmp_path / "journal", wait_delay=0.05))
    (placement,) = result.placements
    assert placement.mode == "copy"
    copy = world.devices(replacement)["/dev/sdf"]
    assert copy == placement.copy_volume_id != data
    assert ran.wait_for_call("mount ") == f"mount {copy} /dev/sdf /data"
    assert world.volume(data)["State"] == "available"  # the original is never touched


def test_in_other_az_create_starts_with_a_new_volume_and_keeps_the_waiting_one(aws, tmp_path):
    # GIVEN the same cross-AZ reclaim, for a volume set to in_other_az=create
    world = SpotGroupWorld.create(aws, size=1)
    (lost,) = world.instance_ids()
    data = world.volumes[lost]
    world.move_to("us-east-1b")
    replacement = world.interrupt(lost)
    # WHEN the replacement boots
    ran = boot(world, boot_part(in_other_az="create"), replacement, tmp_path)
    # THEN it has a new volume in its own AZ, and the old one still waits, untouched
    assert ran.returncode == 0, ran.output
    new = world.devices(replacement)["/dev/sdf"]
    assert new != data and world.volume(new)["AvailabilityZone"] == "us-east-1b"
    assert world.volume(data)["State"] == "available"
    assert ran.calls[0] == f"mount {new} /dev/sdf /data"
