"""``recover replace`` / ``restore-spot`` against the moto server (capacity failures injected, see the extension)."""

from __future__ import annotations

import json

import pytest

from spotkit.rehearsal.local.control import inject_scaling_activity
from tests.support.spot_group import SpotGroupWorld
from spotkit.errors import ToolkitError
from spotkit.runbooks.base import RunContext
from spotkit.runbooks.replace import replace_capacity, restore_spot

SPOT_FAILURE = ("Could not launch Spot Instances. InsufficientInstanceCapacity - There is no Spot capacity "
                "available that matches your request. Launching EC2 instance failed.")


class Killed(Exception):
    pass


def ctx(tmp_path, **kw) -> RunContext:
    return RunContext(journal_dir=tmp_path / "journal", **kw)


def distribution(world) -> dict:
    g = world.asg.describe_auto_scaling_groups(AutoScalingGroupNames=[world.group])["AutoScalingGroups"][0]
    return g["MixedInstancesPolicy"]["InstancesDistribution"]


def fallback_tags(world) -> dict:
    g = world.asg.describe_auto_scaling_groups(AutoScalingGroupNames=[world.group])["AutoScalingGroups"][0]
    return {t["Key"]: t["Value"] for t in g["Tags"] if t["Key"].startswith("spotkit:fallback")}


def short_group(aws, failures: int = 3) -> SpotGroupWorld:
    """A group of 3 that lost 2 instances and failed to launch spot replacements ``failures`` times."""
    world = SpotGroupWorld.create(aws, size=3, on_demand_base=0)
    for iid in world.instance_ids()[:2]:
        world.asg.terminate_instance_in_auto_scaling_group(InstanceId=iid, ShouldDecrementDesiredCapacity=True)
    # moto replaces at once; AWS would keep desired=3 and fail: restore desired without letting moto launch
    # (set on moto's model: moto's UpdateAutoScalingGroup would also drop the mixed instances policy)
    backend_group = _moto_group(world)
    backend_group.desired_capacity = 3
    for n in range(failures):
        inject_scaling_activity(world.group, message=SPOT_FAILURE, minutes_ago=n + 1)
    return world


def _moto_group(world):
    from moto.autoscaling.models import autoscaling_backends
    from moto.core import DEFAULT_ACCOUNT_ID

    return autoscaling_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].autoscaling_groups[world.group]


def test_capacity_failures_raise_the_on_demand_base_and_record_it(aws, tmp_path):
    # GIVEN a group short of 2 instances whose spot launches keep failing
    world = short_group(aws)
    # WHEN replace runs
    result = replace_capacity(world.asg, world.ec2, "training", ctx(tmp_path))
    # THEN the on-demand base covers the shortfall, the original is recorded on the group and in the journal
    assert (result.status, result.shortfall, len(result.capacity_failures)) == ("fallback", 2, 3)
    assert (result.on_demand_base_before, result.on_demand_base_after) == (0, 2)
    assert distribution(world)["OnDemandBaseCapacity"] == 2
    assert distribution(world)["OnDemandPercentageAboveBaseCapacity"] == 0
    assert fallback_tags(world)["spotkit:fallback-original-on-demand-base"] == "0"
    journal = json.loads((tmp_path / "journal" / "replace-training.json").read_text())
    assert (journal["steps"]["fallback"]["original_on_demand_base"], journal["steps"]["fallback"]["on_demand_base"]) == (0, 2)
    assert [a.description for a in result.actions] == [
        "record the original on-demand base 0 on training",
        "set OnDemandBaseCapacity of training from 0 to 2"]


def test_a_second_loss_once_the_on_demand_is_up_raises_the_base_again(aws, tmp_path):
    # GIVEN a group in fallback whose raised base has brought up its 2 on-demand instances
    world = short_group(aws)
    replace_capacity(world.asg, world.ec2, "training", ctx(tmp_path))
    _moto_group(world).set_desired_capacity(3)  # Auto Scaling launches what the raised base asks for
    markets = world.ec2.describe_instances(InstanceIds=world.instance_ids())["Reservations"]
    spot = [i["InstanceId"] for r in markets for i in r["Instances"] if i.get("InstanceLifecycle") == "spot"]
    assert len(world.instance_ids()) == 3 and len(spot) == 1
    # WHEN its last spot instance is lost too and its spot replacement keeps failing
    world.asg.terminate_instance_in_auto_scaling_group(InstanceId=spot[0], ShouldDecrementDesiredCapacity=True)
    _moto_group(world).desired_capacity = 3
    for n in range(3):
        inject_scaling_activity(world.group, message=SPOT_FAILURE, minutes_ago=n + 1)
    result = replace_capacity(world.asg, world.ec2, "training", ctx(tmp_path))
    # THEN that is a new shortfall: the base covers it too (the first raise's on-demand is already up)
    assert (result.status, result.shortfall, result.on_demand_base_before, result.on_demand_base_after) == \
        ("fallback", 1, 2, 3)
    assert fallback_tags(world)["spotkit:fallback-original-on-demand-base"] == "0"


def test_dry_run_changes_nothing(aws, tmp_path):
    world = short_group(aws)
    result = replace_capacity(world.asg, world.ec2, "training", ctx(tmp_path, dry_run=True))
    assert [a.description for a in result.actions] == [
        "would record the original on-demand base 0 on training",
        "would set OnDemandBaseCapacity of training from 0 to 2"]
    assert distribution(world)["OnDemandBaseCapacity"] == 0 and fallback_tags(world) == {}


def test_too_few_failures_means_still_launching(aws, tmp_path):
    world = short_group(aws, failures=1)
    result = replace_capacity(world.asg, world.ec2, "training", ctx(tmp_path))
    assert (result.status, result.actions) == ("launching", [])
    assert distribution(world)["OnDemandBaseCapacity"] == 0


def test_old_failures_outside_the_window_do_not_count(aws, tmp_path):
    world = short_group(aws, failures=0)
    for _ in range(3):
        inject_scaling_activity(world.group, message=SPOT_FAILURE, minutes_ago=90)
    result = replace_capacity(world.asg, world.ec2, "training", ctx(tmp_path), window_minutes=30)
    assert (result.status, result.capacity_failures) == ("launching", [])


@pytest.mark.parametrize("step", ["fallback-recorded", "fallback-raised"])
def test_killed_then_rerun_keeps_the_true_original(aws, tmp_path, step):
    # GIVEN a fallback killed after recording the original (or after raising the base)
    world = short_group(aws)

    def hook(name):
        if name == step:
            raise Killed(name)

    with pytest.raises(Killed):
        replace_capacity(world.asg, world.ec2, "training", ctx(tmp_path, hook=hook))
    # WHEN it runs again
    replace_capacity(world.asg, world.ec2, "training", ctx(tmp_path))
    # THEN the base is raised once and the recorded original is still 0 (not the raised value)
    assert distribution(world)["OnDemandBaseCapacity"] == 2
    assert fallback_tags(world)["spotkit:fallback-original-on-demand-base"] == "0"


def test_restore_spot_refuses_while_spot_still_fails_then_reverts(aws, tmp_path):
    # GIVEN a fallback in force
    world = short_group(aws)
    replace_capacity(world.asg, world.ec2, "training", ctx(tmp_path))
    # WHEN restore-spot runs while failures are recent
    with pytest.raises(ToolkitError) as err:
        restore_spot(world.asg, "training", ctx(tmp_path))
    # THEN it refuses and says what to do
    assert err.value.message == ("spot capacity for group 'training' still failed 3 time(s) in the last 30 minutes "
                                 f"(latest: {SPOT_FAILURE})")
    assert err.value.hint == ("keep the on-demand fallback and try later, or run "
                              "'spotkit recover restore-spot --group training --force'")
    # AND once spot is back (no failures in the window) it reverts the base and removes the record
    result = restore_spot(world.asg, "training", ctx(tmp_path), window_minutes=0)
    assert (result.status, result.on_demand_base_after) == ("restored", 0)
    assert distribution(world)["OnDemandBaseCapacity"] == 0 and fallback_tags(world) == {}
    # AND a second restore has nothing to do
    assert restore_spot(world.asg, "training", ctx(tmp_path), window_minutes=0).status == "nothing-recorded"


def test_full_group_needs_nothing(aws, tmp_path):
    world = SpotGroupWorld.create(aws, size=2)
    result = replace_capacity(world.asg, world.ec2, "training", ctx(tmp_path))
    assert (result.status, result.shortfall, result.actions) == ("ok", 0, [])
