"""bench/runbooks: AWS calls and wall time of ``recover volumes`` and ``status`` for 10, 100 and 500
instances/volumes against the moto server, next to a naive baseline measured in the same run.

The world per size N: N running instances tagged ``spotkit:group`` (a spot group's survivors and
replacements) and N retained data volumes, available, each waiting for its instance (``/dev/sdf``);
plus, for ``status``, a snapshot per volume and the Auto Scaling group.

The naive baseline is what a first script does: ask for each instance of the group by id, list every
volume of the account and filter tags client-side, and wait for each attachment on its own; for
status, one describe per instance and per volume. Both attach the same N volumes (N AttachVolume calls
are the floor: EC2 has no batch attach), so the difference is in the reads.

    python -m bench.runbooks [--sizes 10 100 500]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.moto_server import start_moto_server  # noqa: E402
from toolkit.runbooks import aws_calls as aws  # noqa: E402
from toolkit.runbooks.aws_calls import CallCounter  # noqa: E402
from toolkit.runbooks.base import RunContext  # noqa: E402
from toolkit.runbooks.status import status  # noqa: E402
from toolkit.runbooks.volumes import recover_volumes  # noqa: E402

GROUP = "bench"
MUTATING = ("AttachVolume",)


def build(server, n: int, snapshots: bool) -> None:
    server.reset()
    ec2, asg = server.client("ec2"), server.client("autoscaling")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.0.0/18", AvailabilityZone="us-east-1a")["Subnet"]["SubnetId"]
    lt = ec2.create_launch_template(LaunchTemplateName="bench", LaunchTemplateData={
        "ImageId": "ami-12c6146b", "InstanceType": "m6i.large"})["LaunchTemplate"]["LaunchTemplateId"]
    asg.create_auto_scaling_group(AutoScalingGroupName=GROUP, MinSize=0, MaxSize=n, DesiredCapacity=0,
                                  VPCZoneIdentifier=subnet, LaunchTemplate={"LaunchTemplateId": lt},
                                  Tags=[{"Key": "spotkit:group", "Value": GROUP, "PropagateAtLaunch": True,
                                         "ResourceId": GROUP, "ResourceType": "auto-scaling-group"}])
    tags = [{"Key": "spotkit:group", "Value": GROUP}]
    left = n
    while left:
        k = min(left, 200)
        ec2.run_instances(ImageId="ami-12c6146b", MinCount=k, MaxCount=k, InstanceType="m6i.large", SubnetId=subnet,
                          TagSpecifications=[{"ResourceType": "instance", "Tags": tags}])
        left -= k
    for _ in range(n):
        vol = ec2.create_volume(AvailabilityZone="us-east-1a", Size=10, VolumeType="gp3", TagSpecifications=[{
            "ResourceType": "volume", "Tags": tags + [{"Key": "spotkit:device", "Value": "/dev/sdf"},
                                                      {"Key": "spotkit:retain", "Value": "true"}]}])["VolumeId"]
        if snapshots:
            ec2.create_snapshot(VolumeId=vol, TagSpecifications=[{"ResourceType": "snapshot", "Tags": tags + [
                {"Key": "spotkit:device", "Value": "/dev/sdf"}]}])


def naive_recover(ec2, asg) -> None:
    g = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[GROUP])["AutoScalingGroups"]
    ids = [i["InstanceId"] for r in ec2.describe_instances(Filters=[aws.tag_filter("spotkit:group", GROUP)])["Reservations"]
           for i in r["Instances"]]  # naive scripts often start from a list like this one...
    instances = []
    for iid in ids:  # ...then look at each instance on its own
        instances.append(ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0])
    volumes = []
    for page in ec2.get_paginator("describe_volumes").paginate():  # every volume, filtered client-side
        volumes += [v for v in page["Volumes"] if aws.tags_of(v).get("spotkit:group") == GROUP
                    and aws.tags_of(v).get("spotkit:retain") == "true" and v["State"] == "available"]
    free = [i for i in instances if "/dev/sdf" not in {b["DeviceName"] for b in i.get("BlockDeviceMappings", [])}]
    for vol, inst in zip(volumes, free):
        ec2.attach_volume(VolumeId=vol["VolumeId"], InstanceId=inst["InstanceId"], Device="/dev/sdf")
        ec2.get_waiter("volume_in_use").wait(VolumeIds=[vol["VolumeId"]], WaiterConfig={"Delay": 0.05, "MaxAttempts": 40})
    del g


def naive_status(ec2, asg) -> None:
    asg.describe_auto_scaling_groups(AutoScalingGroupNames=[GROUP])
    ids = [i["InstanceId"] for r in ec2.describe_instances(Filters=[aws.tag_filter("spotkit:group", GROUP)])["Reservations"]
           for i in r["Instances"]]
    for iid in ids:
        ec2.describe_instances(InstanceIds=[iid])
    vols = [v["VolumeId"] for v in ec2.describe_volumes(Filters=[aws.tag_filter("spotkit:group", GROUP)])["Volumes"]]
    for vid in vols:
        ec2.describe_volumes(VolumeIds=[vid])
        ec2.describe_snapshots(OwnerIds=["self"], Filters=[{"Name": "volume-id", "Values": [vid]}])


def measure(server, fn) -> tuple[int, int, float]:
    counter = CallCounter()
    ec2, asg = counter.attach(server.client("ec2")), counter.attach(server.client("autoscaling"))
    t0 = time.perf_counter()
    fn(ec2, asg)
    dt = time.perf_counter() - t0
    mutating = counter.matching(*MUTATING)
    return counter.total - mutating, mutating, dt


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 500])
    args = parser.parse_args(argv)
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's per-request log lines
    server = start_moto_server()
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for n in args.sizes:
                rc = RunContext(journal_dir=Path(tmp) / f"j{n}", wait_delay=0.05, wait_attempts=40)
                build(server, n, snapshots=False)
                spot = measure(server, lambda ec2, asg: recover_volumes(ec2, GROUP, rc))
                build(server, n, snapshots=False)
                naive = measure(server, naive_recover)
                rows.append(("recover volumes", n, spot, naive))
                build(server, n, snapshots=True)
                spot = measure(server, lambda ec2, asg: status(ec2, asg, GROUP))
                naive = measure(server, naive_status)
                rows.append(("status", n, spot, naive))
    finally:
        server.stop()
    print("bench/runbooks: moto server over HTTP; reads = AWS calls other than AttachVolume")
    print(f"  {'runbook':16s} {'N':>4s}   {'spotkit reads':>13s} {'attach':>6s} {'time':>7s}   "
          f"{'naive reads':>11s} {'attach':>6s} {'time':>7s}   {'reads x':>7s} {'time x':>6s}")
    for name, n, (sr, sm, st), (nr, nm, nt) in rows:
        print(f"  {name:16s} {n:4d}   {sr:13d} {sm:6d} {st:6.2f}s   {nr:11d} {nm:6d} {nt:6.2f}s   "
              f"{nr / sr:6.1f}x {nt / st:5.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
