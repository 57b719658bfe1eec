"""The automatic on-demand fallback and return to spot (issue 18), against the moto server over HTTP:
launch failures injected as Auto Scaling sends them, the handler journaling and acting, the return check
with an injected clock (no sleeping)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from tests.support import capacity_events as ce
from tests.support.interruption_world import clients_for
from spotkit.rehearsal.local.control import inject_scaling_activity
from tests.support.spot_group import SpotGroupWorld
from spotkit.rehearsal.local.control import spot_placement_score_requests as score_requests
from spotkit.rehearsal.local.control import set_spot_placement_scores
from spotkit.runtime.interruption import events as ev
from spotkit.runtime.interruption import fallback as fb
from spotkit.runtime.interruption.events import DropEvent
from spotkit.runtime.interruption.handler import ACTED, Handler, HandlerSettings
from spotkit.runtime.interruption.store import LocalFileStore
from spotkit.runbooks.base import RunContext
from spotkit.runbooks.replace import restore_spot

T0 = datetime(2026, 11, 29, 3, 0, tzinfo=timezone.utc)
GROUP = "gpu-spot"


class Clock:
    def __init__(self, at: datetime = T0):
        self.at = at

    def __call__(self) -> datetime:
        return self.at

    def advance(self, minutes: float) -> None:
        self.at += timedelta(minutes=minutes)


def handler(aws, tmp_path, clock=None, **settings) -> Handler:
    s = HandlerSettings(checkpoint_command="", fallback=True, fallback_max_on_demand_base=settings.pop("ceiling", 2),
                        fallback_hold_minutes=30, fallback_check_every_minutes=10, **settings)
    return Handler(clients_for(aws), LocalFileStore(tmp_path / "journal.jsonl"), s, now=clock or Clock())


def group(world) -> dict:
    return world.asg.describe_auto_scaling_groups(AutoScalingGroupNames=[world.group])["AutoScalingGroups"][0]


def base(world) -> int:
    return fb.on_demand_base(group(world))


def tags(world) -> dict:
    return {k: v for k, v in fb.tags_of(group(world)).items() if k.startswith("spotkit:fallback")}


def short_world(aws, size=3, lost=2, on_demand_base=0) -> SpotGroupWorld:
    world = SpotGroupWorld.create(aws, group=GROUP, size=size, on_demand_base=on_demand_base, with_volumes=False)
    ce.make_short(world, lost)
    return world


# --- parsing ------------------------------------------------------------------------------------

def test_launch_failure_event_parses_to_a_group_event_with_a_stable_id():
    body = ce.launch_unsuccessful(GROUP, activity_id="act-1")
    one, = ev.from_message_body(body)
    two, = ev.from_message_body({**body, "id": "another-delivery"})
    assert (one.kind, one.group_name, one.instance_id) == (ev.LAUNCH_FAILURE, GROUP, "")
    assert one.event_id == two.event_id and one.event_id.startswith(f"launch-failure:{GROUP}:")
    assert one.detail["StatusMessage"] == ce.SPOT_FAILURE
    other, = ev.from_message_body(ce.launch_unsuccessful(GROUP, activity_id="act-2"))
    assert other.event_id != one.event_id


def test_ecs_service_action_other_than_placement_failure_is_dropped():
    body = ce.placement_failure("arn:aws:ecs:us-east-1:123456789012:cluster/gpu")
    event, = ev.from_message_body(body)
    assert (event.kind, event.detail["reason"]) == (ev.PLACEMENT_FAILURE, "RESOURCE:GPU")
    body["detail"]["eventName"] = "SERVICE_STEADY_STATE"
    with pytest.raises(DropEvent, match="SERVICE_STEADY_STATE"):
        ev.from_message_body(body)


def test_launch_failure_from_another_source_is_dropped():
    body = ce.launch_unsuccessful(GROUP)
    body["source"] = "my.app"
    with pytest.raises(DropEvent, match="only AWS sends this"):
        ev.from_message_body(body)


@pytest.mark.parametrize("message,cause", [(ce.SPOT_FAILURE, "spot-capacity"), (ce.NOT_ENOUGH, "spot-capacity"),
                                           ("MaxSpotInstanceCountExceeded - max spot instance count exceeded", "spot-capacity"),
                                           ("SpotMaxPriceTooLow - your max price is below the spot price", "spot-capacity")]
                         + [(m, c) for c, m in ce.OTHER_FAILURES.items()])
def test_causes_are_classified(message, cause):
    assert fb.classify(message) == cause


# --- falling back -------------------------------------------------------------------------------

@pytest.mark.parametrize("case,base,live,on_demand_live,expected", [
    # GIVEN a group of 4 (original base 0) with a ceiling of 4
    ("first loss: 2 spot gone", 0, 2, 0, ("raised", 2)),
    ("the same failure again, the 2 on-demand not launched yet", 2, 2, 0, ("kept", 2)),
    ("the same failure again, the 2 on-demand pending", 2, 4, 2, ("kept", 2)),
    ("another zone empties once they are up: 1 more spot gone", 2, 3, 2, ("raised", 3)),
    ("1 more spot gone while 1 of the 2 on-demand is still to come", 2, 2, 1, ("raised", 3)),
    ("not short", 2, 4, 2, ("kept", 2)),
])
def test_the_base_covers_what_it_asked_for_and_a_new_loss_raises_it_again(case, base, live, on_demand_live, expected):
    # WHEN the fallback decides on a capacity failure
    step = fb.decide_fall_back(base=base, recorded=base > 0, desired=4, live=live, on_demand_live=on_demand_live,
                               policy=fb.FallbackPolicy(max_on_demand_base=4))
    # THEN on-demand the base asked for and is not up yet covers the shortfall; what it does not cover raises it
    assert (step.action, step.target) == expected, case


def test_spot_capacity_failure_raises_the_base_by_the_shortfall_and_records_the_split(aws, tmp_path):
    # GIVEN a group of 3 that lost 2 instances, and a ceiling of 2
    world = short_world(aws)
    h = handler(aws, tmp_path)
    # WHEN Auto Scaling reports a spot launch that failed for lack of capacity
    out, = h.handle_body(ce.launch_unsuccessful(GROUP))
    # THEN the on-demand base is raised by the shortfall, the original split is on the group's tags
    assert out.status == ACTED and out.group == GROUP
    assert base(world) == 2
    assert group(world)["MixedInstancesPolicy"]["InstancesDistribution"]["OnDemandPercentageAboveBaseCapacity"] == 0
    t = tags(world)
    assert t["spotkit:fallback-original-on-demand-base"] == "0"
    assert t["spotkit:fallback-since"] == "2026-11-29T03:00:00Z"
    assert t["spotkit:fallback-next-check"] == "2026-11-29T03:10:00Z"
    # AND it is journaled
    action, = h.store.actions(out.event_id)
    assert (action["name"], action["status"], action["detail"]["decision"]) == ("fallback", "done", "raised")
    assert (action["detail"]["on_demand_base_before"], action["detail"]["on_demand_base_after"]) == (0, 2)
    assert h.store.get(out.event_id)["status"] == "done"


def test_a_repeat_does_not_stack(aws, tmp_path):
    world = short_world(aws)
    h = handler(aws, tmp_path, ceiling=5)
    h.handle_body(ce.launch_unsuccessful(GROUP))
    assert base(world) == 2
    # WHEN more failures of the same shortfall arrive (new activities, and a redelivery of one)
    again = ce.launch_unsuccessful(GROUP)
    outs = h.handle_body(again) + h.handle_body(again) + h.handle_body(ce.launch_unsuccessful(GROUP, message=ce.NOT_ENOUGH))
    # THEN the base stays at original + shortfall
    assert base(world) == 2
    assert [o.status for o in outs] == ["acted", "duplicate", "acted"]
    kept = h.store.actions(outs[0].event_id)[0]
    assert (kept["status"], kept["detail"]["decision"]) == ("skipped", "kept")
    assert "does not stack" in kept["detail"]["message"]


def test_the_ceiling_bounds_the_raise(aws, tmp_path):
    world = short_world(aws)
    out, = handler(aws, tmp_path, ceiling=1).handle_body(ce.launch_unsuccessful(GROUP))
    assert base(world) == 1
    assert "ceiling 1" in out.actions[0].message


@pytest.mark.parametrize("cause", sorted(ce.OTHER_FAILURES))
def test_other_failures_are_journaled_with_the_reason_and_change_nothing(aws, tmp_path, cause):
    world = short_world(aws)
    h = handler(aws, tmp_path)
    out, = h.handle_body(ce.launch_unsuccessful(GROUP, message=ce.OTHER_FAILURES[cause]))
    assert out.status == ACTED
    assert base(world) == 0 and tags(world) == {}
    action, = h.store.actions(out.event_id)
    assert (action["name"], action["status"], action["detail"]["cause"]) == ("launch-failure", "skipped", cause)
    assert ce.OTHER_FAILURES[cause] in action["detail"]["message"]


def test_fallback_off_journals_and_changes_nothing(aws, tmp_path):
    world = short_world(aws)
    h = handler(aws, tmp_path)
    h.settings = HandlerSettings(checkpoint_command="", fallback=False)
    out, = h.handle_body(ce.launch_unsuccessful(GROUP))
    assert base(world) == 0 and tags(world) == {}
    assert "fallback is off" in out.actions[0].message


def test_dry_run_says_what_it_would_do_and_changes_nothing(aws, tmp_path):
    world = short_world(aws)
    out, = handler(aws, tmp_path, dry_run=True).handle_body(ce.launch_unsuccessful(GROUP))
    assert out.actions[0].status == "would"
    assert base(world) == 0 and tags(world) == {}


def test_a_group_that_launches_only_on_demand_is_not_touched(aws, tmp_path):
    world = short_world(aws)
    g = group(world)
    dist = dict(g["MixedInstancesPolicy"]["InstancesDistribution"], OnDemandPercentageAboveBaseCapacity=100)
    lt = dict(g["MixedInstancesPolicy"]["LaunchTemplate"])
    lt["LaunchTemplateSpecification"] = {k: v for k, v in lt["LaunchTemplateSpecification"].items()
                                         if k != "LaunchTemplateName"}
    world.asg.update_auto_scaling_group(AutoScalingGroupName=GROUP, MixedInstancesPolicy={
        "LaunchTemplate": lt, "InstancesDistribution": dist})
    out, = handler(aws, tmp_path).handle_body(ce.launch_unsuccessful(GROUP))
    assert base(world) == 0 and "launches only on-demand" in out.actions[0].message


def test_a_group_outside_the_handlers_groups_is_ignored(aws, tmp_path):
    world = short_world(aws)
    out, = handler(aws, tmp_path, groups=("other",)).handle_body(ce.launch_unsuccessful(GROUP))
    assert out.status == "ignored" and base(world) == 0


# --- returning ----------------------------------------------------------------------------------

def ago(clock, minutes: float = 0.0) -> float:
    """``minutes_ago`` for an activity ``minutes`` before the injected clock's now (activities carry real times)."""
    return (datetime.now(timezone.utc) - clock()).total_seconds() / 60 + minutes


def spot_launch(world, minutes_ago: float = 0.5) -> str:
    """A spot instance the group launched (as AWS records it once spot capacity is back)."""
    iid = world.ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1, InstanceType="m6i.large",
                                  InstanceMarketOptions={"MarketType": "spot"})["Instances"][0]["InstanceId"]
    inject_scaling_activity(world.group, status_code="Successful", message="",
                            description=f"Launching a new EC2 instance: {iid}", minutes_ago=minutes_ago)
    return iid


def test_return_after_successes_in_steps_with_a_hold_and_no_flapping(aws, tmp_path):
    # GIVEN a group in fallback at base 2 (original 0) since T0
    world = short_world(aws)
    clock = Clock(datetime.now(timezone.utc).replace(microsecond=0))
    h = handler(aws, tmp_path, clock)
    h.handle_body(ce.launch_unsuccessful(GROUP))
    assert base(world) == 2
    # WHEN the check runs within the hold time, even with spot launching again: held
    clock.advance(10)
    spot_launch(world, ago(clock, 0.5))
    check = lambda: h.handle_body(ce.scheduled_check(time=clock().strftime("%Y-%m-%dT%H:%M:%SZ")))[0]  # noqa: E731
    out = check()
    assert out.actions[0].detail["decision"] == "held" and base(world) == 2
    assert fb.notice.parse_time(tags(world)["spotkit:fallback-next-check"]) == clock() + timedelta(minutes=10)
    # WHEN the hold has passed and spot launches succeeded: one step back to spot
    clock.advance(25)
    out = check()
    assert (out.actions[0].detail["decision"], base(world)) == ("stepped-down", 1)
    assert "1 spot launch(es) succeeded" in out.actions[0].message
    # WHEN spot fails again right after the step: the launch failure raises it once more (no stacking)
    clock.advance(1)
    inject_scaling_activity(world.group, message=ce.SPOT_FAILURE, minutes_ago=ago(clock, 0.1))
    h.handle_body(ce.launch_unsuccessful(GROUP))
    assert base(world) == 2
    # AND the next check waits a full hold from that raise (no flapping back)
    clock.advance(5)
    out = check()
    assert (out.actions[0].detail["decision"], base(world)) == ("held", 2)
    # WHEN the hold has passed again without failures since the last change: the steps resume, a hold apart
    clock.advance(31)
    out = check()
    assert (out.actions[0].detail["decision"], base(world)) == ("stepped-down", 1)
    clock.advance(10)
    assert (check().actions[0].detail["decision"], base(world)) == ("held", 1)
    clock.advance(21)
    out = check()
    # THEN the original split is back and the record is gone
    assert (out.actions[0].detail["decision"], base(world)) == ("restored", 0)
    assert tags(world) == {}
    clock.advance(10)
    assert check().actions[0].message == "no group is in fallback"


def test_capacity_failures_since_the_last_change_keep_the_fallback(aws, tmp_path):
    world = short_world(aws)
    clock = Clock(datetime.now(timezone.utc))
    h = handler(aws, tmp_path, clock)
    h.handle_body(ce.launch_unsuccessful(GROUP))
    clock.advance(40)
    inject_scaling_activity(world.group, message=ce.SPOT_FAILURE, minutes_ago=ago(clock, 20))  # 20 min after the raise
    out, = h.handle_body(ce.scheduled_check())
    assert (out.actions[0].detail["decision"], base(world)) == ("still-failing", 2)


def test_placement_scores_decide_when_no_spot_launch_is_seen(aws, tmp_path):
    world = short_world(aws)
    clock = Clock()
    h = handler(aws, tmp_path, clock)
    h.handle_body(ce.launch_unsuccessful(GROUP))
    clock.advance(31)
    # GIVEN scores the account may read: low means spot is not back
    set_spot_placement_scores("us-east-1", 3)
    out, = h.handle_body(ce.scheduled_check(time="2026-11-29T03:31:00Z"))
    assert (out.actions[0].detail["decision"], out.actions[0].detail["placement_score"], base(world)) == (
        "spot-not-back", 3, 2)
    assert score_requests()[-1] == {"types": ["m6a.large", "m6i.large"], "capacity": 2, "regions": ["us-east-1"]}
    # WHEN the score is high: a step back
    set_spot_placement_scores("us-east-1", 9)
    clock.advance(10)
    out, = h.handle_body(ce.scheduled_check(time="2026-11-29T03:41:00Z"))
    assert (out.actions[0].detail["decision"], base(world)) == ("stepped-down", 1)
    assert "spot placement score 9" in out.actions[0].message


def test_without_scores_or_launches_the_hold_without_failures_is_the_evidence(aws, tmp_path):
    # An account that may not read scores (the emulator refuses as EC2 does) and a group whose base covers it all
    world = short_world(aws)
    clock = Clock()
    h = handler(aws, tmp_path, clock)
    h.handle_body(ce.launch_unsuccessful(GROUP))
    clock.advance(31)
    out, = h.handle_body(ce.scheduled_check(time="2026-11-29T03:31:00Z"))
    assert (out.actions[0].detail["decision"], out.actions[0].detail["placement_score"]) == ("stepped-down", None)
    assert "no spot capacity failure for 30 minutes" in out.actions[0].message


def test_restore_spot_remains_the_manual_override_and_clears_every_fallback_tag(aws, tmp_path):
    world = short_world(aws)
    handler(aws, tmp_path).handle_body(ce.launch_unsuccessful(GROUP))
    assert set(tags(world)) == set(fb.notice.FALLBACK_TAGS)
    result = restore_spot(world.asg, GROUP, RunContext(journal_dir=tmp_path / "rb"), force=True)
    assert (result.status, base(world), tags(world)) == ("restored", 0, {})


# --- ECS ----------------------------------------------------------------------------------------

def ecs_cluster_on(world) -> str:
    ecs = clients_for_world(world)
    g = group(world)
    cp = ecs.create_capacity_provider(name="gpu-spot-cp", autoScalingGroupProvider={
        "autoScalingGroupArn": g["AutoScalingGroupARN"], "managedTerminationProtection": "DISABLED"})
    cluster = ecs.create_cluster(clusterName="gpu", capacityProviders=[cp["capacityProvider"]["name"]])
    return cluster["cluster"]["clusterArn"]


def clients_for_world(world):
    import boto3

    return boto3.client("ecs", region_name="us-east-1", endpoint_url=world.asg.meta.endpoint_url,
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def test_ecs_placement_failure_falls_back_when_the_clusters_spot_launches_failed(aws, tmp_path):
    world = short_world(aws)
    arn = ecs_cluster_on(world)
    h = handler(aws, tmp_path, Clock(datetime.now(timezone.utc)))
    # GIVEN no capacity failure yet: journaled, nothing changes
    out, = h.handle_body(ce.placement_failure(arn))
    assert base(world) == 0 and "no spot capacity failure in the launches of gpu-spot" in out.actions[0].message
    # WHEN the group's spot launches failed
    inject_scaling_activity(world.group, message=ce.SPOT_FAILURE, minutes_ago=2)
    out, = h.handle_body(ce.placement_failure(arn, reason="RESOURCE:MEMORY"))
    assert (out.actions[0].name, out.actions[0].detail["decision"], base(world)) == ("fallback", "raised", 2)


# --- spotkit status -----------------------------------------------------------------------------

def test_status_shows_the_fallback_since_when_and_the_next_check(aws, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from spotkit.cli.main import cli

    short_world(aws)
    handler(aws, tmp_path).handle_body(ce.launch_unsuccessful(GROUP))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["--endpoint-url", aws.url, "--region", "us-east-1", "status", "--group", GROUP,
                                      "--journal-file", str(tmp_path / "journal.jsonl")])
    assert result.exit_code == 0, result.output
    assert (f"{GROUP}: on-demand fallback since 2026-11-29T03:00:00Z (on-demand base 0 -> 2); next return check "
            f"2026-11-29T03:10:00Z (automatic: back to spot in steps) -> spotkit recover restore-spot --group "
            f"{GROUP} to return now") in result.output
    assert "base 0->2" in result.output  # the FALLBACK column
    # AND the journaled launch failure is shown as such, not counted as an interruption
    assert f"{GROUP}: " in result.output and " launch-failure (done)" in result.output
    row = next(line for line in result.output.splitlines() if line.startswith(GROUP) and "base 0->2" in line)
    assert row.split()[4] == "0"  # INTERRUPTIONS
    as_json = CliRunner().invoke(cli, ["--endpoint-url", aws.url, "--region", "us-east-1", "-o", "json", "status",
                                       "--group", GROUP])

    fallback = json.loads(as_json.output)["groups"][0]["fallback"]
    assert (fallback["since"], fallback["next_check"], fallback["changed_at"]) == (
        "2026-11-29T03:00:00Z", "2026-11-29T03:10:00Z", "2026-11-29T03:00:00Z")


def test_a_forwarded_capacity_event_is_dropped():
    # an instance (the agent's forwarding path) must not be able to move a group to on-demand
    with pytest.raises(DropEvent, match="comes only from AWS through EventBridge"):
        ev.from_message_body({"event_id": "launch-failure:g:1", "kind": "launch-failure", "instance_id": "",
                              "source": "imds", "issued_at": "2026-11-29T03:00:00Z", "deadline": "2026-11-29T03:00:00Z",
                              "group_name": GROUP})


def test_lambda_reads_the_fallback_settings_from_its_environment():
    from spotkit.runtime.interruption.lambda_entry import settings_from_env

    s = settings_from_env({"SPOTKIT_FALLBACK": "true", "SPOTKIT_FALLBACK_MAX_ON_DEMAND_BASE": "3",
                           "SPOTKIT_FALLBACK_HOLD_MINUTES": "45", "SPOTKIT_FALLBACK_CHECK_EVERY_MINUTES": "5"})
    assert (s.fallback, s.fallback_policy) == (True, fb.FallbackPolicy(max_on_demand_base=3, hold_minutes=45,
                                                                       check_every_minutes=5))
    assert settings_from_env({}).fallback is False


def test_the_lambda_with_the_dynamodb_journal_falls_back_once(aws, tmp_path):
    from spotkit.runtime.interruption.lambda_entry import build_handler, handle
    from spotkit.runtime.interruption.store import create_journal_table

    world = short_world(aws)
    create_journal_table(aws.client("dynamodb"), "journal")
    h = build_handler({"SPOTKIT_JOURNAL_TABLE": "journal", "SPOTKIT_FALLBACK": "true"}, client_factory=aws.client)
    body = ce.launch_unsuccessful(GROUP)
    out = handle({"Records": [{"messageId": "m1", "body": json.dumps(body)},
                              {"messageId": "m2", "body": json.dumps(body)}]}, None, h)
    assert out == {"batchItemFailures": []}
    assert base(world) == 2
    event, = [e for e in h.store.events() if e["kind"] == "launch-failure"]
    assert (event["group"], event["status"]) == (GROUP, "done")


def test_handle_events_with_fallback_acts_on_a_launch_failure_file(aws, tmp_path):
    from click.testing import CliRunner

    from spotkit.cli.main import cli

    world = short_world(aws)
    path = tmp_path / "event.json"
    path.write_text(json.dumps(ce.launch_unsuccessful(GROUP)))
    args = ["--endpoint-url", aws.url, "--region", "us-east-1", "handle-events", "--event-file", str(path),
            "--journal-file", str(tmp_path / "j.jsonl"), "--yes"]
    # WHEN handled without --fallback: journaled, nothing changes
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "launch-failure=skipped" in result.output and base(world) == 0
    # WHEN a new failure is handled with --fallback and a ceiling of 1
    path.write_text(json.dumps(ce.launch_unsuccessful(GROUP)))
    result = CliRunner().invoke(cli, args + ["--fallback", "--fallback-max-on-demand-base", "1"])
    assert result.exit_code == 0, result.output
    assert "fallback=done" in result.output and base(world) == 1


def test_a_failure_older_than_the_hold_no_longer_blocks_the_return(aws, tmp_path):
    world = short_world(aws)
    clock = Clock(datetime.now(timezone.utc).replace(microsecond=0))
    h = handler(aws, tmp_path, clock)
    h.handle_body(ce.launch_unsuccessful(GROUP))
    inject_scaling_activity(world.group, message=ce.SPOT_FAILURE, minutes_ago=ago(clock, -25))  # 25 min after
    clock.advance(31)
    out, = h.handle_body(ce.scheduled_check(time=clock().strftime("%Y-%m-%dT%H:%M:%SZ")))
    assert (out.actions[0].detail["decision"], base(world)) == ("still-failing", 2)
    # WHEN that failure is more than a hold time old
    clock.advance(30)
    out, = h.handle_body(ce.scheduled_check(time=clock().strftime("%Y-%m-%dT%H:%M:%SZ")))
    assert (out.actions[0].detail["decision"], base(world)) == ("stepped-down", 1)
