"""Only what spotkit manages is touched by the capacity fallback (issue 25): a launch failure naming an Auto
Scaling group without spotkit's tags, or outside ``--group``, changes nothing (it used to raise the group's
on-demand base and tag it); the return check and the ECS placement path change only spotkit's groups; an
event from another account is dropped. Against the moto server, with an injected clock."""

from __future__ import annotations

import json

from tests.support import capacity_events as ce
from tests.test_capacity_fallback import GROUP, Clock, base, group, handler, short_world, tags
from spotkit.runtime.interruption import fallback as fb


def _untag(world) -> None:
    world.asg.delete_tags(Tags=[{"Key": k, "ResourceId": world.group, "ResourceType": "auto-scaling-group"}
                                for k in ("spotkit:group", "spotkit:managed")])


def test_a_launch_failure_of_a_group_spotkit_does_not_manage_changes_nothing(aws, tmp_path):
    # GIVEN a group short of spot capacity that carries none of spotkit's tags (someone else's group)
    world = short_world(aws)
    _untag(world)
    # WHEN its spot launch failure reaches a handler with the fallback on
    out, = handler(aws, tmp_path).handle_body(ce.launch_unsuccessful(GROUP))
    # THEN it is ignored with the reason, the on-demand base is unchanged and no fallback tag is written
    assert out.status == "ignored"
    assert out.reason == (f"Auto Scaling group {GROUP!r} is not managed by spotkit (no spotkit:managed=true or "
                          "spotkit:group tag)")
    assert base(world) == 0 and tags(world) == {}


def test_a_launch_failure_of_a_group_that_does_not_exist_changes_nothing(aws, tmp_path):
    short_world(aws)
    out, = handler(aws, tmp_path).handle_body(ce.launch_unsuccessful("ghost-group"))
    assert (out.status, out.reason) == ("ignored", "Auto Scaling group 'ghost-group' does not exist in this "
                                                   "account and region")


def test_a_launch_failure_from_another_account_is_dropped_and_journaled(aws, tmp_path):
    # GIVEN a spotkit group, and a launch failure that claims to come from another account
    world = short_world(aws)
    body = ce.launch_unsuccessful(GROUP)
    body["account"] = "999999999999"
    h = handler(aws, tmp_path)
    # WHEN handled
    out, = h.handle_body(json.dumps(body))
    # THEN dropped with the reason, journaled, nothing changed
    assert out.status == "dropped"
    assert out.reason.startswith("the event is from account 999999999999, not this handler's account 123456789012")
    assert h.store.get(out.event_id)["status"] == "dropped"
    assert base(world) == 0 and tags(world) == {}


def test_handle_events_group_option_limits_capacity_events_too(aws, tmp_path):
    from click.testing import CliRunner

    from spotkit.cli.main import cli

    # GIVEN a spotkit group short of capacity, and --fallback with --group naming another group
    world = short_world(aws)
    path = tmp_path / "event.json"
    path.write_text(json.dumps(ce.launch_unsuccessful(GROUP)))
    result = CliRunner().invoke(cli, ["--endpoint-url", aws.url, "--region", "us-east-1", "handle-events",
                                      "--event-file", str(path), "--journal-file", str(tmp_path / "j.jsonl"),
                                      "--fallback", "--group", "someone-elses", "--yes"])
    # THEN the event is ignored (exit 0: nothing wrong with it) and the group is not changed
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"ignored     launch-failure -: - (Auto Scaling group {GROUP!r} is in group "
                                    f"{GROUP!r}, not one of someone-elses)")
    assert base(world) == 0


def test_the_return_check_changes_only_spotkit_groups(aws, tmp_path):
    # GIVEN a group in fallback (the record on its tags) whose spotkit tags were since removed
    world = short_world(aws)
    clock = Clock()
    h = handler(aws, tmp_path, clock)
    h.handle_body(ce.launch_unsuccessful(GROUP))
    assert base(world) == 2
    _untag(world)
    # WHEN the scheduled return check runs long after the hold
    clock.advance(600)
    out, = h.handle_body(ce.scheduled_check(time="2026-11-29T13:00:00Z"))
    # THEN it finds no group of spotkit's in fallback: the other group's base and record are left alone
    assert [(a.name, a.status, a.message) for a in out.actions] == [("return-check", "skipped", "no group is in fallback")]
    assert base(world) == 2 and fb.read_record(group(world)) is not None
