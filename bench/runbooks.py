"""bench/runbooks: AWS calls and wall time of ``recover volumes`` and ``status`` for 10, 100 and 500
instances/volumes against the moto server, next to a plain script measured in the same run.

The world per size N: N running instances tagged ``spotkit:group`` (a spot group's survivors and
replacements) and N retained data volumes, available, each waiting for its instance (``/dev/sdf``);
plus, for ``status``, a snapshot per volume and the Auto Scaling group.

The baseline is the script a competent user would write: the same server-side filtered, paginated reads
spotkit makes, one AttachVolume per volume (EC2 has no batch attach) and one waiter for all of them, but
no journal, no lock, no plan/confirm and no dry-run. So the time column shows what spotkit's safety
costs, not a win over a strawman.

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


def plain_recover(ec2, asg) -> None:
    """What a competent script does: the same server-side filtered, paginated reads as spotkit, one
    AttachVolume per volume, one waiter for all of them; no journal, no lock, no dry-run."""
    instances = [i for page in ec2.get_paginator("describe_instances").paginate(Filters=[
        aws.tag_filter("spotkit:group", GROUP), {"Name": "instance-state-name", "Values": ["running"]}])
        for r in page["Reservations"] for i in r["Instances"]]
    volumes = [v for page in ec2.get_paginator("describe_volumes").paginate(Filters=[
        aws.tag_filter("spotkit:group", GROUP), aws.tag_filter("spotkit:retain", "true"),
        {"Name": "status", "Values": ["available"]}]) for v in page["Volumes"]]
    free = [i for i in instances if "/dev/sdf" not in {b["DeviceName"] for b in i.get("BlockDeviceMappings", [])}]
    attached = []
    for vol, inst in zip(volumes, free):
        ec2.attach_volume(VolumeId=vol["VolumeId"], InstanceId=inst["InstanceId"], Device="/dev/sdf")
        attached.append(vol["VolumeId"])
    for start in range(0, len(attached), 500):
        ec2.get_waiter("volume_in_use").wait(VolumeIds=attached[start:start + 500],
                                             WaiterConfig={"Delay": 0.05, "MaxAttempts": 40})


def plain_status(ec2, asg) -> None:
    """The same filtered reads a competent status script makes: the group, its instances, its volumes, its
    snapshots (one paginated, filtered call each)."""
    asg.describe_auto_scaling_groups(AutoScalingGroupNames=[GROUP])
    for page in ec2.get_paginator("describe_instances").paginate(Filters=[aws.tag_filter("spotkit:group", GROUP)]):
        pass
    for page in ec2.get_paginator("describe_volumes").paginate(Filters=[aws.tag_filter("spotkit:group", GROUP)]):
        pass
    for page in ec2.get_paginator("describe_snapshots").paginate(OwnerIds=["self"],
                                                                 Filters=[aws.tag_filter("spotkit:group", GROUP)]):
        pass


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
                plain = measure(server, plain_recover)
                rows.append(("recover volumes", n, spot, plain))
                build(server, n, snapshots=True)
                spot = measure(server, lambda ec2, asg: status(ec2, asg, GROUP))
                plain = measure(server, plain_status)
                rows.append(("status", n, spot, plain))
    finally:
        server.stop()
    print("bench/runbooks: moto server over HTTP; reads = AWS calls other than AttachVolume")
    print(f"  {'runbook':16s} {'N':>4s}   {'spotkit reads':>13s} {'attach':>6s} {'time':>7s}   "
          f"{'plain reads':>11s} {'attach':>6s} {'time':>7s}   {'time, spotkit / plain':>21s}")
    for name, n, (sr, sm, st), (nr, nm, nt) in rows:
        print(f"  {name:16s} {n:4d}   {sr:13d} {sm:6d} {st:6.2f}s   {nr:11d} {nm:6d} {nt:6.2f}s   "
              f"{st / nt:20.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
