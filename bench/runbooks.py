"""bench/runbooks: AWS calls and wall time of ``recover volumes`` and ``status`` for 10, 100 and 500
instances/volumes against the moto server, next to a plain script measured in the same run.

The world per size N: N running instances tagged ``spotkit:group`` (a spot group's survivors and
replacements) and N retained data volumes, available, each waiting for its instance (``/dev/sdf``);
plus, for ``status``, a snapshot per volume and the Auto Scaling group.

The baseline is the script a competent user would write: the same server-side filtered, paginated reads
spotkit makes, one AttachVolume per volume (EC2 has no batch attach) and one waiter for all of them, but
no journal, no lock, no plan/confirm and no dry-run. So the time column shows what spotkit's safety
costs, not a win over a strawman.

Each contender runs ``--repeat`` times (default 3) per size, alternating which goes first, each recovery on a
freshly built world; the median run is printed (reads, writes, wall time, and the time spent inside AWS
calls), with every run's time after it.

    python -m bench.runbooks [--sizes 10 100 500] [--repeat 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.moto_server import start_moto_server  # noqa: E402
from spotkit.runbooks import aws_calls as aws  # noqa: E402
from spotkit.runbooks.aws_calls import CallCounter  # noqa: E402
from spotkit.runbooks.base import RunContext  # noqa: E402
from spotkit.runbooks.status import status  # noqa: E402
from spotkit.runbooks.volumes import recover_volumes  # noqa: E402
from spotkit.runtime.notice import TAG_DEVICE, TAG_GROUP, TAG_RETAIN  # noqa: E402

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
                                  Tags=[{"Key": TAG_GROUP, "Value": GROUP, "PropagateAtLaunch": True,
                                         "ResourceId": GROUP, "ResourceType": "auto-scaling-group"}])
    tags = [{"Key": TAG_GROUP, "Value": GROUP}]
    left = n
    while left:
        k = min(left, 200)
        ec2.run_instances(ImageId="ami-12c6146b", MinCount=k, MaxCount=k, InstanceType="m6i.large", SubnetId=subnet,
                          TagSpecifications=[{"ResourceType": "instance", "Tags": tags}])
        left -= k
    for _ in range(n):
        vol = ec2.create_volume(AvailabilityZone="us-east-1a", Size=10, VolumeType="gp3", TagSpecifications=[{
            "ResourceType": "volume", "Tags": tags + [{"Key": TAG_DEVICE, "Value": "/dev/sdf"},
                                                      {"Key": TAG_RETAIN, "Value": "true"}]}])["VolumeId"]
        if snapshots:
            ec2.create_snapshot(VolumeId=vol, TagSpecifications=[{"ResourceType": "snapshot", "Tags": tags + [
                {"Key": TAG_DEVICE, "Value": "/dev/sdf"}]}])


def plain_recover(ec2, asg) -> None:
    """What a competent script does: the same server-side filtered, paginated reads as spotkit, one
    AttachVolume per volume, one waiter for all of them; no journal, no lock, no dry-run."""
    instances = [i for page in ec2.get_paginator("describe_instances").paginate(Filters=[
        aws.tag_filter(TAG_GROUP, GROUP), {"Name": "instance-state-name", "Values": ["running"]}])
        for r in page["Reservations"] for i in r["Instances"]]
    volumes = [v for page in ec2.get_paginator("describe_volumes").paginate(Filters=[
        aws.tag_filter(TAG_GROUP, GROUP), aws.tag_filter(TAG_RETAIN, "true"),
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
    # The question is the same as status's (the group's live instances, its retained data volumes, its
    # snapshots), so the filters are the same: without the state and retain filters the answer on AWS would
    # also hold terminated instances and every root volume of the group (the compute group tags them all).
    asg.describe_auto_scaling_groups(AutoScalingGroupNames=[GROUP])
    for page in ec2.get_paginator("describe_instances").paginate(Filters=[
            {"Name": "instance-state-name", "Values": ["pending", "running"]}, aws.tag_filter(TAG_GROUP, GROUP)]):
        pass
    for page in ec2.get_paginator("describe_volumes").paginate(Filters=[
            aws.tag_filter(TAG_GROUP, GROUP), aws.tag_filter(TAG_RETAIN, "true")]):
        pass
    for page in ec2.get_paginator("describe_snapshots").paginate(OwnerIds=["self"],
                                                                 Filters=[aws.tag_filter(TAG_GROUP, GROUP)]):
        pass


@dataclass
class Run:
    reads: int
    writes: int
    wall: float
    aws: float  # wall time inside AWS calls (request, wire, moto, parsing); wall - aws is the caller's own time


def measure(server, fn) -> Run:
    counter = CallCounter()
    ec2, asg = counter.attach(server.client("ec2")), counter.attach(server.client("autoscaling"))
    t0 = time.perf_counter()
    fn(ec2, asg)
    dt = time.perf_counter() - t0
    writes = counter.matching(*MUTATING)
    return Run(counter.total - writes, writes, dt, counter.total_seconds)


def median_run(runs: list[Run]) -> Run:
    """The run of median wall time (its reads, writes and AWS time with it), so one noisy sample decides nothing."""
    return sorted(runs, key=lambda r: r.wall)[len(runs) // 2]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 500])
    parser.add_argument("--repeat", type=int, default=3,
                        help="alternating runs per contender and size (the median is printed; default 3)")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's per-request log lines
    server = start_moto_server()
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for n in args.sizes:
                spot_runs, plain_runs = [], []
                for k in range(args.repeat):
                    # alternate who goes first, each on a freshly built world
                    order = [("spotkit", spot_runs), ("plain", plain_runs)]
                    for who, runs in (order if k % 2 == 0 else order[::-1]):
                        build(server, n, snapshots=False)
                        if who == "spotkit":
                            rc = RunContext(journal_dir=Path(tmp) / f"j{n}-{k}", wait_delay=0.05, wait_attempts=40)
                            runs.append(measure(server, lambda ec2, asg: recover_volumes(ec2, GROUP, rc)))
                        else:
                            runs.append(measure(server, plain_recover))
                        assert runs[-1].writes == n, (who, runs[-1])  # every volume attached once
                rows.append(("recover volumes", n, spot_runs, plain_runs))
                build(server, n, snapshots=True)
                spot_runs, plain_runs = [], []
                for k in range(args.repeat):
                    order = [(spot_runs, lambda ec2, asg: status(ec2, asg, GROUP)), (plain_runs, plain_status)]
                    for runs, fn in (order if k % 2 == 0 else order[::-1]):
                        runs.append(measure(server, fn))
                rows.append(("status", n, spot_runs, plain_runs))
    finally:
        server.stop()
    print(f"bench/runbooks: moto server over HTTP, in one process (imports and client creation are outside the "
          f"timing for both); median of {args.repeat} alternating run(s) per contender; reads = AWS calls other "
          f"than AttachVolume, writes = AttachVolume calls, aws = wall time inside AWS calls")
    print(f"  {'runbook':16s} {'N':>4s}   {'spotkit reads':>13s} {'writes':>6s} {'time':>7s} {'aws':>7s}   "
          f"{'plain reads':>11s} {'writes':>6s} {'time':>7s} {'aws':>7s}   {'spotkit / plain':>15s}  all runs (s)")
    for name, n, spot_runs, plain_runs in rows:
        s, p = median_run(spot_runs), median_run(plain_runs)
        every = " ".join(f"{a.wall:.2f}/{b.wall:.2f}" for a, b in zip(spot_runs, plain_runs))
        print(f"  {name:16s} {n:4d}   {s.reads:13d} {s.writes:6d} {s.wall:6.2f}s {s.aws:6.2f}s   "
              f"{p.reads:11d} {p.writes:6d} {p.wall:6.2f}s {p.aws:6.2f}s   {s.wall / p.wall:14.2f}x  {every}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
