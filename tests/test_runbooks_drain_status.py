"""``recover drain`` (reusing the interruption handler's actions) and ``spotkit status``, over the moto server."""

from __future__ import annotations

import json
import uuid

from click.testing import CliRunner

from tests.support.interruption_world import CLUSTER, GROUP, HOOK, build_world
from spotkit.rehearsal.local.control import completed_lifecycle_actions
from tests.support.spot_group import SpotGroupWorld
from spotkit.cli.main import cli
from spotkit.runbooks.aws_calls import CallCounter
from spotkit.runbooks.base import RunContext
from spotkit.runbooks.drain import DrainInstance
from spotkit.runbooks.replace import replace_capacity
from spotkit.runbooks.status import status


def ctx(tmp_path, **kw) -> RunContext:
    return RunContext(journal_dir=tmp_path / "journal", wait_delay=0.05, wait_attempts=40, **kw)


def registered(world, instance_id: str) -> bool:
    health = world.clients.elbv2.describe_target_health(TargetGroupArn=world.target_group_arn)
    return instance_id in {d["Target"]["Id"] for d in health["TargetHealthDescriptions"]}


def ecs_status(world, instance_id: str) -> str:
    arn = world.container_instances[instance_id]
    return world.clients.ecs.describe_container_instances(cluster=CLUSTER, containerInstances=[arn])["containerInstances"][0]["status"]


def test_drain_deregisters_sets_draining_and_completes_the_lifecycle_action(aws, tmp_path):
    # GIVEN an instance behind a target group, in an ECS cluster, in a group with the drain hook
    world = build_world(aws, managed=2, unmanaged=0)
    iid, other = world.managed
    token = str(uuid.uuid4())
    # WHEN it is drained by hand
    result = DrainInstance(world.clients, ctx(tmp_path)).run(iid, token=token)
    # THEN it left the target group and ECS, the hook was completed with CONTINUE, the other instance is untouched
    assert [(s["name"], s["status"]) for s in result.steps] == [
        ("deregister-targets", "done"), ("ecs-drain", "done"), ("complete-lifecycle-action", "done")]
    assert (registered(world, iid), registered(world, other)) == (False, True)
    assert (ecs_status(world, iid), ecs_status(world, other)) == ("DRAINING", "ACTIVE")
    assert [(c["group"], c["hook"], c["instance_id"], c["result"]) for c in completed_lifecycle_actions()] == [
        (GROUP, HOOK, iid, "CONTINUE")]
    journal = json.loads((tmp_path / "journal" / f"drain-{iid}.json").read_text())
    assert journal["steps"]["ecs-drain"]["outcome"] == "done"
    # AND a second run finds nothing left to do
    again = DrainInstance(world.clients, ctx(tmp_path)).run(iid, token=token, complete_lifecycle=False)
    assert [(s["name"], s["status"]) for s in again.steps] == [("deregister-targets", "skipped"), ("ecs-drain", "skipped")]


def test_drain_dry_run_changes_nothing(aws, tmp_path):
    world = build_world(aws, managed=1, unmanaged=0)
    (iid,) = world.managed
    result = DrainInstance(world.clients, ctx(tmp_path, dry_run=True)).run(iid, token=str(uuid.uuid4()))
    assert [s["status"] for s in result.steps] == ["would", "would", "would"]
    assert registered(world, iid) and ecs_status(world, iid) == "ACTIVE" and completed_lifecycle_actions() == []


def test_status_counts_spot_and_on_demand_waiting_volumes_snapshots_and_fallbacks(aws, tmp_path):
    # GIVEN a group of 3 spot instances (on-demand base 0) plus one on-demand instance of the group,
    # one reclaimed instance not replaced, a snapshot of its volume, and an on-demand fallback in force
    world = SpotGroupWorld.create(aws, size=3)
    lost = world.instance_ids()[0]
    data = world.volumes[lost]
    snap = world.ec2.create_snapshot(VolumeId=data, TagSpecifications=[{"ResourceType": "snapshot", "Tags": [
        {"Key": "spotkit:group", "Value": "training"}, {"Key": "spotkit:device", "Value": "/dev/sdf"}]}])["SnapshotId"]
    # (and a newer snapshot of the group that is no device's, e.g. a backup tool's copy of the group tag: not shown)
    world.ec2.create_snapshot(VolumeId=data, TagSpecifications=[{"ResourceType": "snapshot", "Tags": [
        {"Key": "spotkit:group", "Value": "training"}]}])
    world.asg.terminate_instance_in_auto_scaling_group(InstanceId=lost, ShouldDecrementDesiredCapacity=True)
    world.ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1, InstanceType="m6i.large",
                            SubnetId=world.subnets["us-east-1a"],
                            TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "spotkit:group", "Value": "training"}]}])
    from spotkit.rehearsal.local.control import inject_scaling_activity
    from moto.autoscaling.models import autoscaling_backends
    from moto.core import DEFAULT_ACCOUNT_ID

    autoscaling_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].autoscaling_groups["training"].desired_capacity = 3
    for n in range(2):
        inject_scaling_activity("training", message="InsufficientInstanceCapacity", minutes_ago=n + 1)
    replace_capacity(world.asg, world.ec2, "training", ctx(tmp_path))
    counter = CallCounter()
    ec2, asg = counter.attach(aws.client("ec2")), counter.attach(aws.client("autoscaling"))
    # WHEN status is read
    result = status(ec2, asg, interruptions=[
        {"group": "training", "instance_id": lost, "kind": "spot-interruption", "time": "2026-11-23T09:00:00Z"},
        {"group": "other", "instance_id": "i-0", "kind": "rebalance", "time": "2026-11-23T08:00:00Z"}])
    # THEN each figure is right, from four reads
    g = next(g for g in result.groups if g.group == "training")
    assert (g.desired, g.spot, g.on_demand) == (3, 2, 1)
    assert g.waiting_volumes == [{"volume_id": data, "device": "/dev/sdf", "az": "us-east-1a"}]
    assert [(s.device, s.snapshot_id, s.age_minutes) for s in g.snapshots] == [("/dev/sdf", snap, 0)]
    assert (g.fallback["original_on_demand_base"], g.fallback["on_demand_base"]) == (0, 1)
    assert [e["instance_id"] for e in g.interruptions] == [lost]
    assert counter.total == 4


def test_cli_recover_volumes_and_status_over_http(aws, tmp_path):
    # GIVEN a reclaimed instance replaced by the group
    world = SpotGroupWorld.create(aws, size=1)
    (lost,) = world.instance_ids()
    data = world.volumes[lost]
    replacement = world.interrupt(lost)
    runner = CliRunner()
    base = ["--endpoint-url", aws.url, "--region", "us-east-1"]
    journal = ["--journal-dir", str(tmp_path / "j")]
    # WHEN status runs, then recover volumes --dry-run, then recover volumes --yes --output json
    st = runner.invoke(cli, base + ["--output", "json", "status", "--group", "training"], catch_exceptions=False)
    dry = runner.invoke(cli, base + ["recover", "volumes", "--group", "training", "--dry-run"] + journal,
                        catch_exceptions=False)
    run = runner.invoke(cli, base + ["-o", "json", "recover", "volumes", "--group", "training", "--yes"] + journal,
                        catch_exceptions=False)
    # THEN status shows the waiting volume, the dry run says what it would do, and the real run attached it
    assert st.exit_code == 0, st.output
    assert json.loads(st.output)["groups"][0]["waiting_volumes"] == [
        {"volume_id": data, "device": "/dev/sdf", "az": "us-east-1a"}]
    assert dry.exit_code == 0 and f"would attach {data} to {replacement} as /dev/sdf" in dry.output
    assert run.exit_code == 0, run.output
    out = json.loads(run.output)
    assert [(p["volume_id"], p["instance_id"], p["status"]) for p in out["placements"]] == [(data, replacement, "attached")]
    assert world.devices(replacement)["/dev/sdf"] == data


def test_cli_without_yes_asks_and_aborts_on_no(aws, tmp_path):
    world = SpotGroupWorld.create(aws, size=1)
    (lost,) = world.instance_ids()
    data = world.volumes[lost]
    world.interrupt(lost)
    result = CliRunner().invoke(cli, ["--endpoint-url", aws.url, "recover", "volumes", "--group", "training",
                                      "--journal-dir", str(tmp_path / "j")], input="n\n")
    assert result.exit_code == 1
    assert "recover volumes training: go ahead? [y/N]" in result.output
    assert world.volume(data)["State"] == "available"


def test_drain_by_hand_without_a_token_completes_by_instance_id(aws, tmp_path):
    # GIVEN no lifecycle token (nothing journaled it) WHEN an instance is drained by hand
    world = build_world(aws, managed=1, unmanaged=0)
    (iid,) = world.managed
    result = DrainInstance(world.clients, ctx(tmp_path)).run(iid)
    # THEN the action is completed by instance id, as AWS allows, instead of failing on a missing token
    assert ("complete-lifecycle-action", "done") in [(s["name"], s["status"]) for s in result.steps]
    assert [(c["instance_id"], c["result"]) for c in completed_lifecycle_actions()] == [(iid, "CONTINUE")]


def test_drain_asks_each_target_group_about_its_instance_alone(aws, tmp_path):
    # GIVEN two instances behind one target group, and clients that keep every DescribeTargetHealth's parameters
    from spotkit.runtime.interruption.actions import Clients

    world = build_world(aws, managed=2, unmanaged=0)
    iid, other = world.managed
    asked = []

    def keep(event_name, params=None, **_):
        if event_name.endswith("DescribeTargetHealth"):
            asked.append(params)

    def client(service):
        made = aws.client(service)
        made.meta.events.register("before-parameter-build.*.*", keep)
        return made

    # WHEN one is drained by hand
    result = DrainInstance(Clients(factory=client), ctx(tmp_path)).run(iid, complete_lifecycle=False)
    # THEN it left the group, and the group was never read whole: each read named that instance alone
    assert [(s["name"], s["status"]) for s in result.steps] == [("deregister-targets", "done"), ("ecs-drain", "done")]
    assert asked == [{"TargetGroupArn": world.target_group_arn, "Targets": [{"Id": iid}]}]
    assert (registered(world, iid), registered(world, other)) == (False, True)
