"""Real events nobody here wrote (tests/fixtures/events, sources in SOURCES.md): AWS's documentation samples,
aws-node-termination-handler's and another drainer's. Valid events that need no action are ``ignored``
(``--event-file`` exits 0); the ones that need action parse to what they say; the ones with placeholder
accounts are dropped by the account check, with the reason. Also the handler's user errors on bad input
(a binary journal file, an unknown region): exit 1, one line, a ``next:`` that works, no traceback."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tests.support import interruption_world as w
from tests.support.cli import run_spotkit
from spotkit.runtime.agent.notices import SpotMonitor
from spotkit.runtime.interruption import events as ev
from spotkit.runtime.interruption.events import DropEvent, IgnoreEvent
from spotkit.runtime.interruption.handler import Handler, HandlerSettings
from spotkit.runtime.interruption.store import LocalFileStore
from spotkit.runtime.notice import format_time

SAMPLES = Path(__file__).parent / "fixtures" / "events"


def sample(name: str) -> str:
    return (SAMPLES / name).read_text()


def test_every_sample_is_listed_with_its_source():
    listed = SAMPLES.joinpath("SOURCES.md").read_text()
    files = sorted(p.name for p in SAMPLES.glob("*.json"))
    assert files and all(f"`{name}`" in listed for name in files)


@pytest.mark.parametrize("name, reason", [
    ("nth-ec2-state-change-pending.json",
     "EC2 Instance State-change Notification: state 'pending' is not a departure (stopping, shutting-down, stopped, "
     "terminated): nothing to do"),
    ("aws-docs-launch-lifecycle-action.json",
     "EC2 Instance-launch Lifecycle Action from aws.autoscaling is not an interruption warning: nothing to do"),
    ("sqs-asg-test-notification.json",
     "Auto Scaling notification: autoscaling:TEST_NOTIFICATION (sent when a notification target is set up): "
     "nothing to do"),
])
def test_valid_events_that_need_no_action_are_ignored(name, reason):
    with pytest.raises(IgnoreEvent) as err:
        ev.from_message_body(sample(name))
    assert str(err.value) == reason


def test_samples_that_need_action_parse_to_what_they_say():
    spot, = ev.from_message_body(sample("nth-spot-itn.json"))
    assert (spot.kind, spot.instance_id, spot.action, spot.deadline) == (
        ev.SPOT_INTERRUPTION, "i-0b662ef9931388ba0", "terminate", "1970-01-01T00:02:00Z")
    rebalance, = ev.from_message_body(sample("nth-rebalance-recommendation.json"))
    assert (rebalance.kind, rebalance.instance_id, rebalance.account) == (
        ev.REBALANCE_RECOMMENDATION, "i-0b662ef9931388ba0", "123456789012")
    health, = ev.from_message_body(sample("nth-health-scheduled-change.json"))
    assert (health.kind, health.instance_id, health.deadline) == (ev.SCHEDULED_CHANGE, "i-12345678", "2016-06-05T15:10:09Z")
    lifecycle, = ev.from_message_body(sample("nth-asg-lifecycle-terminate.json"))
    assert lifecycle.lifecycle == ev.LifecycleAction("testt1.demo-0a20f32c.kops.sh", "cluster-termination-handler",
                                                     "0befcbdb-6ecd-498a-9ff7-ae9b54447cd6")
    direct, = ev.from_message_body(sample("sqs-asg-lifecycle-terminating.json"))
    assert (direct.kind, direct.instance_id, direct.account) == (ev.LIFECYCLE_TERMINATE, "i-0194708ef7e24dcc7",
                                                                 "609519224176")


@pytest.mark.parametrize("name", ["aws-docs-terminate-lifecycle-action.json", "aws-docs-spot-interruption-warning.json"])
def test_a_documented_event_with_a_placeholder_time_that_needs_action_is_a_drop(name):
    # AWS's samples have "time": "yyyy-mm-ddThh:mm:ssZ": they cannot be timed, so they are not acted on
    with pytest.raises(DropEvent) as err:
        ev.from_message_body(sample(name))
    assert not isinstance(err.value, IgnoreEvent)
    assert "yyyy-mm-ddThh:mm:ssZ" in str(err.value)


def test_the_documented_metadata_notice_is_the_same_notice_as_its_warning():
    # GIVEN AWS's instance-action example, and a warning for the same instance sent 120 s before that time
    [imds] = SpotMonitor().parse(sample("aws-docs-imds-instance-action.json"), datetime.now(timezone.utc))
    imds = imds.for_instance("i-1234567890abcdef0")  # the agent's reading of it (toolkit/runtime/agent/notices.py)
    warning = json.loads(sample("aws-docs-spot-interruption-warning.json"))
    warning.update(time="2017-09-18T08:20:00Z")
    warning["detail"]["instance-action"] = "terminate"
    bridge, = ev.from_message_body(warning)
    # THEN both are one notice (the store acts once), due at the documented time
    assert (imds.action, format_time(imds.time)) == ("terminate", "2017-09-18T08:22:00Z")
    assert imds.id == bridge.event_id


@pytest.mark.parametrize("name, account", [("nth-spot-itn.json", "<account_number>"),
                                           ("nth-health-scheduled-change.json", "account id")])
def test_samples_with_a_placeholder_account_are_dropped_by_the_account_check(aws, tmp_path, name, account):
    handler = Handler(w.clients_for(aws), LocalFileStore(tmp_path / "j.jsonl"), HandlerSettings(checkpoint_command=""))
    [out] = handler.handle_body(sample(name))
    assert out.status == "dropped"
    assert out.reason.startswith(f"the event is from account {account}, not this handler's account 123456789012")


def test_event_file_of_events_that_need_no_action_exits_0_saying_ignored(aws, tmp_path, capsys):
    # GIVEN a file with the three real events that need nothing done
    path = tmp_path / "events.json"
    path.write_text(json.dumps([json.loads(sample(n)) for n in (
        "sqs-asg-test-notification.json", "aws-docs-launch-lifecycle-action.json", "nth-ec2-state-change-pending.json")]))
    # WHEN handled
    run = run_spotkit(capsys, "--endpoint-url", aws.url, "--region", "us-east-1", "handle-events", "--event-file",
                      str(path), "--journal-file", str(tmp_path / "j.jsonl"), "--yes")
    # THEN exit 0, one "ignored" row each with the reason
    assert run.code == 0, run.err
    rows = run.out.splitlines()
    assert [r.split()[0] for r in rows[:3]] == ["ignored"] * 3
    assert "TEST_NOTIFICATION" in rows[0] and "EC2 Instance-launch Lifecycle Action" in rows[1] and "'pending'" in rows[2]


def test_a_binary_journal_file_is_a_user_error_and_is_left_alone(aws, tmp_path, capsys, monkeypatch):
    # GIVEN a binary file passed as the journal
    monkeypatch.chdir(tmp_path)
    journal = tmp_path / "model.bin"
    journal.write_bytes(bytes(range(256)) * 4)
    before = journal.read_bytes()
    event = tmp_path / "event.json"
    event.write_text(sample("nth-ec2-state-change-pending.json"))
    args = ["--endpoint-url", aws.url, "--region", "us-east-1", "handle-events", "--event-file", str(event), "--yes"]
    # WHEN handle-events runs with it
    run = run_spotkit(capsys, *args, "--journal-file", str(journal))
    # THEN a user error: exit 1, one line, no traceback; the file is untouched
    assert run.code == 1
    assert "Traceback" not in run.err and "Internal error" not in run.err
    assert run.err.splitlines()[0] == (f"Error: the journal file {journal} is not a spotkit journal: it is not UTF-8 "
                                       "text (byte 128); spotkit does not write to it")
    assert journal.read_bytes() == before
    # AND the next step, pasted, works
    [step] = run.next_lines
    command = step.split("   #")[0].split()
    assert command[:1] == ["spotkit"] and "--journal-file" in command
    assert run_spotkit(capsys, *command[1:]).code == 0


def test_status_with_a_binary_journal_file_is_a_user_error(aws, tmp_path, capsys, monkeypatch):
    # GIVEN a binary file passed to status as the journal
    monkeypatch.chdir(tmp_path)
    journal = tmp_path / "model.bin"
    journal.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(128, 256)))
    run = run_spotkit(capsys, "--endpoint-url", aws.url, "--region", "us-east-1", "status", "--journal-file", str(journal))
    # THEN exit 1, one line saying what it is, and a next step that works when pasted
    assert run.code == 1 and "Traceback" not in run.err
    assert run.err.splitlines()[0].startswith(f"Error: the journal file {journal} is not a spotkit journal")
    [step] = run.next_lines
    command = step.split("   #")[0].split()
    assert command[0] == "spotkit" and str(journal) not in command
    assert run_spotkit(capsys, *command[1:]).code == 0


def test_an_unknown_region_is_a_user_error(aws, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    event = tmp_path / "event.json"
    event.write_text(sample("nth-ec2-state-change-pending.json"))
    run = run_spotkit(capsys, "--endpoint-url", aws.url, "--region", "nowhere-1", "handle-events", "--event-file",
                      str(event), "--yes")
    assert run.code == 1
    assert run.err.splitlines()[0] == "Error: --region: 'nowhere-1' is not an AWS region"
    assert "Traceback" not in run.err
    [step] = run.next_lines
    command = step.split("   #")[0].split()
    assert command[0] == "spotkit" and command[command.index("--region") + 1] == "us-east-1"
    assert run_spotkit(capsys, *command[1:]).code == 0
