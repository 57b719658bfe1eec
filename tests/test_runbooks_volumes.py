"""``recover volumes`` against the moto server over HTTP: same AZ, cross AZ, dry run, user errors, kills."""

from __future__ import annotations

import json

import pytest

from tests.support.spot_group import SpotGroupWorld
from spotkit.errors import ToolkitError
from spotkit.runbooks.aws_calls import CallCounter
from spotkit.runbooks.base import RunContext
from spotkit.runbooks.volumes import recover_volumes


class Killed(Exception):
    """Stands for the process being killed at a step."""


def ctx(tmp_path, **kw) -> RunContext:
    return RunContext(journal_dir=tmp_path / "journal", wait_delay=0.05, wait_attempts=40, **kw)


def kill_at(step: str):
    def hook(name: str) -> None:
        if name == step:
            raise Killed(step)
    return hook


def tags(resource: dict) -> dict:
    return {t["Key"]: t["Value"] for t in resource.get("Tags", [])}


def test_retained_volume_goes_back_on_the_replacement_in_the_same_az(aws, tmp_path):
    # GIVEN a group of two instances, each with a retained data volume as /dev/sdf
    world = SpotGroupWorld.create(aws, size=2)
    lost, kept = world.instance_ids()
    data = world.volumes[lost]
    # WHEN spot reclaims one instance, the group replaces it, and the runbook runs
    replacement = world.interrupt(lost)
    assert world.volume(data)["State"] == "available"
    result = recover_volumes(world.ec2, "training", ctx(tmp_path))
    # THEN the data volume is attached to the replacement as the same device, and nothing else changed
    assert world.devices(replacement)["/dev/sdf"] == data
    assert world.volume(data)["Attachments"][0]["InstanceId"] == replacement
    assert world.devices(kept)["/dev/sdf"] == world.volumes[kept]
    assert [(p.volume_id, p.mode, p.instance_id, p.status) for p in result.placements] == [
        (data, "attach", replacement, "attached")]
    assert [a.description for a in result.actions] == [f"attach {data} to {replacement} as /dev/sdf"]
    assert world.all_snapshots() == []
    assert len(world.all_volumes()) == 2


def test_dry_run_says_what_it_would_attach_and_changes_nothing(aws, tmp_path):
    # GIVEN a reclaimed instance whose volume waits for the replacement
    world = SpotGroupWorld.create(aws, size=1)
    (lost,) = world.instance_ids()
    data = world.volumes[lost]
    replacement = world.interrupt(lost)
    # WHEN the runbook runs dry
    result = recover_volumes(world.ec2, "training", ctx(tmp_path, dry_run=True))
    # THEN it says "would attach ..." and the volume is still available
    assert [a.description for a in result.actions] == [f"would attach {data} to {replacement} as /dev/sdf"]
    assert [a.done for a in result.actions] == [False]
    assert world.volume(data)["State"] == "available"
    assert not (tmp_path / "journal").exists()


def test_cross_az_copies_the_volume_and_leaves_the_original_untouched(aws, tmp_path):
    # GIVEN a volume in us-east-1a and a group that now launches only in us-east-1b
    world = SpotGroupWorld.create(aws, size=1, az="us-east-1a")
    (lost,) = world.instance_ids()
    data = world.volumes[lost]
    original_tags = tags(world.volume(data))
    world.move_to("us-east-1b")
    replacement = world.interrupt(lost)
    assert world.instance_az(replacement) == "us-east-1b"
    # WHEN the runbook runs
    result = recover_volumes(world.ec2, "training", ctx(tmp_path))
    # THEN a copy made from a snapshot in us-east-1b is attached as /dev/sdf, tags copied and origin recorded
    (p,) = result.placements
    assert (p.mode, p.status, p.instance_id) == ("copy", "attached", replacement)
    copy = world.volume(p.copy_volume_id)
    assert copy["AvailabilityZone"] == "us-east-1b"
    assert copy["SnapshotId"] == p.snapshot_id
    assert world.devices(replacement)["/dev/sdf"] == p.copy_volume_id
    assert tags(copy) == {**original_tags, "spotkit:origin-volume": data, "spotkit:origin-snapshot": p.snapshot_id,
                          "spotkit:target-az": "us-east-1b"}
    (snap,) = world.all_snapshots()
    assert (snap["SnapshotId"], snap["VolumeId"], tags(snap)["spotkit:origin-volume"]) == (p.snapshot_id, data, data)
    # AND the original is still there, available, with its tags unchanged
    original = world.volume(data)
    assert (original["State"], tags(original)) == ("available", original_tags)
    # AND a second run leaves everything alone: the original is superseded by its copy
    again = recover_volumes(world.ec2, "training", ctx(tmp_path))
    assert (again.placements, again.actions, again.superseded) == ([], [], {data: p.copy_volume_id})
    assert len(world.all_snapshots()) == 1 and len(world.all_volumes()) == 2


def test_cross_az_dry_run_lists_every_mutating_call(aws, tmp_path):
    # GIVEN a volume whose only replacement is in another AZ
    world = SpotGroupWorld.create(aws, size=1, az="us-east-1a")
    (lost,) = world.instance_ids()
    data = world.volumes[lost]
    world.move_to("us-east-1b")
    replacement = world.interrupt(lost)
    # WHEN the runbook runs dry
    result = recover_volumes(world.ec2, "training", ctx(tmp_path, dry_run=True))
    # THEN the snapshot, the new volume and the attachment are all "would", and nothing exists
    assert [a.description for a in result.actions] == [
        f"would snapshot {data} (/dev/sdf, us-east-1a) to copy it to us-east-1b for {replacement}",
        f"would create a volume from that snapshot in us-east-1b (tags copied, origin {data})",
        f"would attach the new volume to {replacement} as /dev/sdf",
    ]
    assert world.all_snapshots() == [] and len(world.all_volumes()) == 1


def test_no_replacement_yet_ends_with_what_to_do(aws, tmp_path):
    # GIVEN a reclaimed instance that the group did not replace (desired capacity went down)
    world = SpotGroupWorld.create(aws, size=1)
    (lost,) = world.instance_ids()
    data = world.volumes[lost]
    world.asg.terminate_instance_in_auto_scaling_group(InstanceId=lost, ShouldDecrementDesiredCapacity=True)
    # WHEN the runbook runs
    result = recover_volumes(world.ec2, "training", ctx(tmp_path))
    # THEN the volume waits and the error says what to do next
    assert [(p.volume_id, p.mode) for p in result.placements] == [(data, "waiting")]
    with pytest.raises(ToolkitError) as err:
        result.raise_for_unresolved()
    assert err.value.message == (f"no running instance of group 'training' lacks the device of 1 retained volume(s): "
                                 f"{data} (/dev/sdf, us-east-1a)")
    assert err.value.hint == ("wait for the group to launch a replacement (spotkit recover replace --group training), "
                              "then run 'spotkit recover volumes --group training' again")


def test_az_mismatch_without_copy_permission_ends_with_what_to_do(aws, tmp_path):
    # GIVEN the replacement is in another AZ and copying is not allowed
    world = SpotGroupWorld.create(aws, size=1, az="us-east-1a")
    (lost,) = world.instance_ids()
    data = world.volumes[lost]
    world.move_to("us-east-1b")
    replacement = world.interrupt(lost)
    # WHEN the runbook runs with allow_copy=False
    result = recover_volumes(world.ec2, "training", ctx(tmp_path), allow_copy=False)
    # THEN nothing is made and the error names the AZs and the fix
    assert result.actions == [] and world.all_snapshots() == []
    with pytest.raises(ToolkitError) as err:
        result.raise_for_unresolved()
    assert err.value.message == (
        "1 retained volume(s) of group 'training' are in another AZ than every instance that lacks their device "
        f"({data} /dev/sdf is in us-east-1a, replacement {replacement} is in us-east-1b) and copying across AZs "
        "was not allowed")
    assert err.value.hint == ("run again with --allow-copy to snapshot and re-create them in the replacement's AZ, "
                              "or make the group launch an instance in us-east-1a")


@pytest.mark.parametrize("step", ["snapshot-created", "volume-created", "attach-called", "attached"])
def test_cross_az_killed_at_a_step_then_rerun_makes_nothing_twice(aws, tmp_path, step):
    # GIVEN a cross-AZ recovery killed at a step
    world = SpotGroupWorld.create(aws, size=1, az="us-east-1a")
    (lost,) = world.instance_ids()
    data = world.volumes[lost]
    world.move_to("us-east-1b")
    replacement = world.interrupt(lost)
    with pytest.raises(Killed):
        recover_volumes(world.ec2, "training", ctx(tmp_path, hook=kill_at(step)))
    # WHEN it runs again
    result = recover_volumes(world.ec2, "training", ctx(tmp_path))
    # THEN there is one snapshot, one copy, attached once to the replacement, and the original is intact
    snaps = world.all_snapshots()
    copies = [v for v in world.all_volumes() if tags(v).get("spotkit:origin-volume") == data]
    assert len(snaps) == 1 and len(copies) == 1
    assert world.devices(replacement)["/dev/sdf"] == copies[0]["VolumeId"]
    assert [a["InstanceId"] for a in copies[0]["Attachments"]] == [replacement]
    assert world.volume(data)["State"] == "available"
    # AND the journal still knows both resources it made
    journal = json.loads((tmp_path / "journal" / "volumes-training.json").read_text())
    assert sorted((m["kind"], m["id"]) for m in journal["made"]) == sorted(
        [("snapshot", snaps[0]["SnapshotId"]), ("volume", copies[0]["VolumeId"])])
    assert journal["runs"] == 2
    assert result.resumed is True


@pytest.mark.parametrize("step", ["attach-called", "attached"])
def test_same_az_killed_then_rerun_attaches_once(aws, tmp_path, step):
    # GIVEN a same-AZ recovery killed after the attach call
    world = SpotGroupWorld.create(aws, size=2)
    lost = world.instance_ids()[0]
    data = world.volumes[lost]
    replacement = world.interrupt(lost)
    with pytest.raises(Killed):
        recover_volumes(world.ec2, "training", ctx(tmp_path, hook=kill_at(step)))
    # WHEN it runs again
    result = recover_volumes(world.ec2, "training", ctx(tmp_path))
    # THEN it has nothing left to do and the volume is attached once
    assert (result.placements, result.actions) == ([], [])
    assert [a["InstanceId"] for a in world.volume(data)["Attachments"]] == [replacement]
    assert len(world.all_volumes()) == 2 and world.all_snapshots() == []


def test_read_calls_do_not_grow_with_instances(aws, tmp_path):
    # GIVEN two groups' worth of recoveries, 1 and 6 reclaimed instances
    counts = {}
    for size in (1, 6):
        world = SpotGroupWorld.all_reclaimed(aws, size)
        counter = CallCounter()
        ec2 = counter.attach(aws.client("ec2"))
        # WHEN the runbook puts every volume back
        result = recover_volumes(ec2, "training", ctx(tmp_path / str(size)))
        assert [p.status for p in result.placements] == ["attached"] * size
        counts[size] = counter
    # THEN the reads are the same calls (plan + one batched waiter poll); only the attachments scale
    for size in (1, 6):
        assert counts[size].by_operation["ec2:DescribeInstances"] == 1
        assert counts[size].by_operation["ec2:DescribeVolumes"] == 2
        assert counts[size].by_operation["ec2:AttachVolume"] == size


def before_first_attach(action):
    """A progress callback that does ``action`` once, after planning and before the first attach."""
    fired = []

    def progress(done, total, label):
        if done == 0 and not fired:
            fired.append(label)
            action()
    return progress


def test_boot_part_attached_the_volume_first_counts_as_attached(aws, tmp_path):
    # GIVEN a reclaimed instance whose replacement's boot part attaches the retained volume while the runbook
    # is between planning and attaching
    world = SpotGroupWorld.create(aws, size=1)
    (lost,) = world.instance_ids()
    data = world.volumes[lost]
    replacement = world.interrupt(lost)
    boot = before_first_attach(lambda: world.ec2.attach_volume(VolumeId=data, InstanceId=replacement, Device="/dev/sdf"))
    # WHEN the runbook's own attach is refused (VolumeInUse)
    result = recover_volumes(world.ec2, "training", ctx(tmp_path, progress=boot))
    # THEN the placement is attached (by the boot part), no error is raised, and there is one attachment
    (placement,) = result.placements
    assert (placement.status, placement.note) == ("attached", "attached meanwhile by another caller (the instance's boot part)")
    result.raise_for_unresolved()
    assert [(a["InstanceId"], a["Device"]) for a in world.volume(data)["Attachments"]] == [(replacement, "/dev/sdf")]


def test_device_taken_meanwhile_leaves_the_volume_waiting_and_says_so(aws, tmp_path):
    # GIVEN a replacement that got another volume as /dev/sdf after the runbook planned (its boot part made one)
    world = SpotGroupWorld.create(aws, size=1)
    (lost,) = world.instance_ids()
    data = world.volumes[lost]
    replacement = world.interrupt(lost)
    az = world.instance_az(replacement)

    def boot_made_a_new_one():
        new = world.ec2.create_volume(AvailabilityZone=az, Size=20, VolumeType="gp3")["VolumeId"]
        world.ec2.attach_volume(VolumeId=new, InstanceId=replacement, Device="/dev/sdf")

    # WHEN the runbook's attach is refused (the device is in use)
    result = recover_volumes(world.ec2, "training", ctx(tmp_path, progress=before_first_attach(boot_made_a_new_one)))
    # THEN the retained volume is left waiting, untouched, and the run ends with what EC2 said and what to do
    (placement,) = result.placements
    assert placement.status == "taken"
    assert placement.note.startswith("InvalidParameterValue: ")
    assert world.volume(data)["State"] == "available"
    with pytest.raises(ToolkitError) as err:
        result.raise_for_unresolved()
    assert str(err.value).startswith(f"1 retained volume(s) of group 'training' could not be attached because something "
                                     f"attached first ({data} to {replacement} as /dev/sdf: InvalidParameterValue: ")
    assert "run 'spotkit recover volumes --group training' again" in err.value.hint
