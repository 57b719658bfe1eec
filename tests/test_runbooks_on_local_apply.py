"""Recovery on a real deployment: the training stack applied to the local target with real Terraform, its
instances booted with the data-volume part of the launch template Terraform created, reclaimed, and put
back by the boot part itself or by `spotkit recover volumes`.

moto runs no user data, so the test runs the deployed part (read back from the launch template in the
emulator) as each instance's boot, with bash and the AWS CLI; only the mount and /etc writes are
recorders (tests/support/boot_part.py).
"""

from __future__ import annotations

import base64

import pytest

from spotkit.constructs.data_volume import DataVolumeSettings
from tests.support.boot_part import run_boot_part, user_data_part
from tests.test_deploy_terraform import client, local, run  # noqa: F401 - `local` is a fixture

pytestmark = [pytest.mark.terraform]

GROUP = "spotkit-training"  # TrainingConfig().name names the group
DEVICE = DataVolumeSettings().device_name


def running(ec2) -> list[dict]:
    found = ec2.describe_instances(Filters=[{"Name": "tag:spotkit:group", "Values": [GROUP]},
                                            {"Name": "instance-state-name", "Values": ["running"]}])
    return [i for r in found["Reservations"] for i in r["Instances"]]


def deployed_data_volume_part(ec2, asg) -> str:
    """The data-volume part of the user data in the launch template the group launches from."""
    group = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[GROUP])["AutoScalingGroups"][0]
    spec = (group.get("MixedInstancesPolicy", {}).get("LaunchTemplate", {}).get("LaunchTemplateSpecification")
            or group["LaunchTemplate"])
    (version,) = ec2.describe_launch_template_versions(LaunchTemplateId=spec["LaunchTemplateId"],
                                                       Versions=["$Latest"])["LaunchTemplateVersions"]
    data = version["LaunchTemplateData"]
    assert [b["DeviceName"] for b in data.get("BlockDeviceMappings", [])] == ["/dev/xvda"]  # no templated data volume
    return user_data_part(base64.b64decode(data["UserData"]).decode(), "data-volumes")


def devices(ec2, instance_id: str) -> dict[str, str]:
    inst = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    return {b["DeviceName"]: b["Ebs"]["VolumeId"] for b in inst.get("BlockDeviceMappings", [])}


def reclaim(asg, ec2, instance: dict) -> dict:
    """What AWS does on a spot reclaim: the instance goes and the group launches a replacement."""
    asg.terminate_instance_in_auto_scaling_group(InstanceId=instance["InstanceId"], ShouldDecrementDesiredCapacity=False)
    if not running(ec2):  # moto may not replace on its own: ask for the capacity again, as AWS would restore it
        asg.set_desired_capacity(AutoScalingGroupName=GROUP, DesiredCapacity=1)
    (replacement,) = running(ec2)
    assert replacement["InstanceId"] != instance["InstanceId"]
    return replacement


def test_retained_volume_comes_back_after_reclaims_on_a_local_apply(local, tmp_path, monkeypatch):  # noqa: F811
    project, state = local
    monkeypatch.chdir(tmp_path)
    # GIVEN the training stack deployed to the emulator with real Terraform, scaled to one instance
    applied = run("apply", "training", "--target", "local", "--yes")
    assert applied.exit_code == 0, applied.output
    asg, ec2 = client(state, "autoscaling"), client(state, "ec2")
    asg.set_desired_capacity(AutoScalingGroupName=GROUP, DesiredCapacity=1)
    part = deployed_data_volume_part(ec2, asg)
    (first,) = running(ec2)
    # AND its first boot made the group's retained data volume
    booted = run_boot_part(part, endpoint=state.url, instance=first, workdir=tmp_path / "boot-1")
    assert booted.returncode == 0, booted.output
    (volume,) = [v["VolumeId"] for v in ec2.describe_volumes(
        Filters=[{"Name": "tag:spotkit:group", "Values": [GROUP]}, {"Name": "tag:spotkit:retain", "Values": ["true"]}])["Volumes"]]
    assert devices(ec2, first["InstanceId"])[DEVICE] == volume

    # WHEN spot takes the instance back and the replacement comes up before its boot part ran (or it failed)
    replacement = reclaim(asg, ec2, first)
    assert ec2.describe_volumes(VolumeIds=[volume])["Volumes"][0]["State"] == "available"
    assert DEVICE not in devices(ec2, replacement["InstanceId"])
    recovered = run("--endpoint-url", state.url, "recover", "volumes", "--group", GROUP, "--yes")
    # THEN recover volumes attaches the same volume to the replacement as the same device
    assert recovered.exit_code == 0, recovered.output
    assert devices(ec2, replacement["InstanceId"])[DEVICE] == volume

    # WHEN spot takes that one back too and the next replacement boots
    third = reclaim(asg, ec2, replacement)
    booted = run_boot_part(part, endpoint=state.url, instance=third, workdir=tmp_path / "boot-3")
    # THEN its boot part re-attached the same volume by itself, and recover volumes has nothing to do
    assert booted.returncode == 0, booted.output
    assert devices(ec2, third["InstanceId"])[DEVICE] == volume
    again = run("--endpoint-url", state.url, "recover", "volumes", "--group", GROUP, "--yes")
    assert again.exit_code == 0, again.output
    # AND across it all, no other volume and no snapshot was made
    tagged = ec2.describe_volumes(Filters=[{"Name": "tag:spotkit:group", "Values": [GROUP]}])["Volumes"]
    assert [v["VolumeId"] for v in tagged] == [volume]
    assert ec2.describe_snapshots(Filters=[{"Name": "volume-id", "Values": [volume]}])["Snapshots"] == []
    assert ec2.describe_snapshots(Filters=[{"Name": "tag:spotkit:group", "Values": [GROUP]}])["Snapshots"] == []
