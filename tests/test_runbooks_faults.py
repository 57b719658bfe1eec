"""``recover volumes`` under faults, against the moto server over HTTP.

- killed (SIGKILL, in a child process) right after each of its mutating calls during a cross-AZ copy of two
  volumes, then previewed with ``--dry-run`` (which must neither fail nor change anything) and re-run;
- two runs on one group at once: the second waits for the first or stops with a message naming it;
- a copy made by a run that lost a race is tagged superseded and never offered as a waiting volume;
- the endpoint going away mid-run: a clear error, the journal intact, and the re-run resumes.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.support.spot_group import SpotGroupWorld
from spotkit.runtime.notice import TAG_LOCK, format_time
from spotkit.runbooks.base import RunContext
from spotkit.runbooks.journal import Journal
from spotkit.runbooks.lock import GroupLocked, Lease, LockLost
from spotkit.runbooks.volumes import recover_volumes

TREE = Path(__file__).resolve().parents[1]
MUTATIONS_OF_A_TWO_VOLUME_COPY = 8  # lease, 2 x (snapshot, volume, attach), release


def tags(resource: dict) -> dict:
    return {t["Key"]: t["Value"] for t in resource.get("Tags", [])}


def ctx(tmp_path, name="journal", **kw) -> RunContext:
    kw.setdefault("lock_settle", 0.05)
    return RunContext(journal_dir=tmp_path / name, wait_delay=0.05, wait_attempts=100, **kw)


def cross_az_world(aws, size=2):
    """``size`` instances in us-east-1a reclaimed; their replacements only in us-east-1b."""
    world = SpotGroupWorld.create(aws, size=size, az="us-east-1a")
    world.move_to("us-east-1b")
    replacements = [world.interrupt(iid) for iid in world.instance_ids()]
    return world, sorted(world.volumes.values()), replacements


def lease_value(world) -> str | None:
    found = world.asg.describe_tags(Filters=[{"Name": "auto-scaling-group", "Values": [world.group]},
                                             {"Name": "key", "Values": [TAG_LOCK]}])["Tags"]
    return found[0]["Value"] if found else None


def fingerprint(world) -> dict:
    """Everything a run could change: volumes (state, attachments, tags), snapshots, the group's tags."""
    vols = {v["VolumeId"]: (v["State"], sorted((a["InstanceId"], a["Device"]) for a in v.get("Attachments", [])),
                            sorted(tags(v).items())) for v in world.all_volumes()}
    snaps = sorted(s["SnapshotId"] for s in world.all_snapshots())
    group = world.asg.describe_tags(Filters=[{"Name": "auto-scaling-group", "Values": [world.group]}])["Tags"]
    return {"volumes": vols, "snapshots": snaps, "group_tags": sorted((t["Key"], t["Value"]) for t in group)}


def assert_recovered_once(world, originals, replacements):
    """Every original has one live copy, attached exactly once, to a distinct replacement; one snapshot each;
    no retained copy is left available to be offered to a later instance; the originals are untouched."""
    volumes = world.all_volumes()
    attached_to = {}
    for origin in originals:
        copies = [v for v in volumes if tags(v).get("spotkit:origin-volume") == origin]
        live = [v for v in copies if tags(v).get("spotkit:retain") == "true"]
        assert len(live) == 1, f"{origin}: live copies {[(v['VolumeId'], v['State'], tags(v)) for v in copies]}"
        (copy,) = live
        assert copy["State"] == "in-use" and len(copy["Attachments"]) == 1, copy
        attached_to[origin] = (copy["Attachments"][0]["InstanceId"], copy["Attachments"][0]["Device"])
        snaps = [s for s in world.all_snapshots() if s["VolumeId"] == origin]
        assert len(snaps) == 1, f"{origin}: {len(snaps)} snapshots"
        original = world.volume(origin)
        assert original["State"] == "available" and tags(original)["spotkit:retain"] == "true"
    assert sorted(attached_to.values()) == sorted((r, "/dev/sdf") for r in replacements)
    offered = [v["VolumeId"] for v in volumes if v["State"] == "available" and tags(v).get("spotkit:retain") == "true"
               and "spotkit:origin-volume" in tags(v)]
    assert offered == []


def spotkit(aws, *args, journal_dir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(TREE), "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20"}
    return subprocess.run([sys.executable, "-m", "spotkit.cli.main", "--endpoint-url", aws.url, "recover", "volumes",
                           "--group", "training", "--journal-dir", str(journal_dir), *args],
                          cwd=TREE, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("kill_after", range(1, MUTATIONS_OF_A_TWO_VOLUME_COPY + 1))
def test_killed_after_any_mutating_call_then_dry_run_and_rerun_recover_everything_once(aws, tmp_path, kill_after):
    # GIVEN two volumes whose replacements are in another AZ, and a run SIGKILLed right after its k-th change
    world, originals, replacements = cross_az_world(aws)
    journal_dir = tmp_path / "journal"
    env = {**os.environ, "PYTHONPATH": str(TREE)}
    child = subprocess.run([sys.executable, "-m", "tests.support.runbook_child", aws.url, str(journal_dir), "training",
                            str(kill_after)], cwd=TREE, env=env, capture_output=True, text=True, timeout=300)
    assert child.returncode == -signal.SIGKILL, (child.returncode, child.stdout, child.stderr)
    assert child.stdout.splitlines()[-1].startswith(f"call {kill_after} ")
    before = fingerprint(world)
    # WHEN the next run is previewed with --dry-run
    dry = spotkit(aws, "--dry-run", journal_dir=journal_dir)
    # THEN the preview succeeds and changes nothing (not even the dead run's lease)
    assert dry.returncode == 0, dry.stderr
    assert "Traceback" not in dry.stderr and "Internal error" not in dry.stderr
    assert fingerprint(world) == before
    # WHEN it runs for real
    real = spotkit(aws, "--yes", journal_dir=journal_dir)
    # THEN every volume is back once, nothing was made twice, and no live lease is left (when the killed run had
    # nothing left to do, its stale lease stays until a run with work takes it over: it blocks nobody)
    assert real.returncode == 0, real.stdout + real.stderr
    assert_recovered_once(world, originals, replacements)
    left = lease_value(world)
    assert left is None or Lease.parse(left).holder_is_dead(), left
    # (read as a run reads it: the document plus the log of records a killed run appended; a run that finds
    # nothing to do leaves both as they are)
    journal = Journal(journal_dir, "volumes", "training", read_only=True).data
    assert journal["made"] and (journal_dir / "volumes-training.json").is_file()
    existing = {("snapshot", s["SnapshotId"]) for s in world.all_snapshots()} | {
        ("volume", v["VolumeId"]) for v in world.all_volumes()}
    assert journal["made"] and {(m["kind"], m["id"]) for m in journal["made"]} <= existing  # what it made, it knows
    # AND one more run has nothing to do
    settled = fingerprint(world)
    again = spotkit(aws, "--yes", journal_dir=journal_dir)
    assert again.returncode == 0 and "nothing to do" in again.stdout, again.stdout + again.stderr
    assert fingerprint(world) == settled


def test_an_unkilled_child_makes_exactly_the_mutating_calls_the_kill_test_counts(aws, tmp_path):
    # GIVEN the world of the kill test; WHEN the child runs to the end
    world, originals, replacements = cross_az_world(aws)
    env = {**os.environ, "PYTHONPATH": str(TREE)}
    child = subprocess.run([sys.executable, "-m", "tests.support.runbook_child", aws.url, str(tmp_path / "j"), "training",
                            "0"], cwd=TREE, env=env, capture_output=True, text=True, timeout=300)
    # THEN it made the calls the kill test kills after, in order, and recovered everything
    assert child.returncode == 0, child.stderr
    ops = [line.split()[2] for line in child.stdout.splitlines() if line.startswith("call ")]
    assert ops == ["CreateOrUpdateTags", "CreateSnapshot", "CreateVolume", "AttachVolume",
                   "CreateSnapshot", "CreateVolume", "AttachVolume", "DeleteTags"]
    assert len(ops) == MUTATIONS_OF_A_TWO_VOLUME_COPY
    assert_recovered_once(world, originals, replacements)


def test_dry_run_resuming_a_half_done_copy_says_what_it_would_do(aws, tmp_path):
    # GIVEN a run killed right after its snapshot (the state the TypeError came from)
    world, (data,), (replacement,) = cross_az_world(aws, size=1)
    journal_dir = tmp_path / "journal"
    env = {**os.environ, "PYTHONPATH": str(TREE)}
    child = subprocess.run([sys.executable, "-m", "tests.support.runbook_child", aws.url, str(journal_dir), "training",
                            "2"], cwd=TREE, env=env, capture_output=True, text=True, timeout=300)
    assert child.returncode == -signal.SIGKILL
    (snap,) = world.all_snapshots()
    before = fingerprint(world)
    journal = journal_dir / "volumes-training.json"
    journal_before = journal.read_text()
    # WHEN the runbook runs dry from code
    result = recover_volumes(world.ec2, "training", RunContext(journal_dir=journal_dir, dry_run=True),
                             autoscaling=world.asg)
    # THEN it resumes from the snapshot it finds, says it would create the volume and attach it, and writes nothing
    assert [a.description for a in result.actions] == [
        f"would create a volume from {snap['SnapshotId']} in us-east-1b (origin {data})",
        f"would attach the new volume to {replacement} as /dev/sdf"]
    assert [p.status for p in result.placements] == ["would-copy"]
    assert fingerprint(world) == before
    assert journal.read_text() == journal_before


def test_second_run_on_the_same_group_stops_with_the_holder_and_what_to_do(aws, tmp_path):
    # GIVEN a run on another machine (its own journal) that is in the middle of a cross-AZ copy
    world, originals, replacements = cross_az_world(aws)
    second: list = []

    def start_second(step):
        if step == "snapshot-created" and not second:
            try:
                recover_volumes(world.ec2, "training", ctx(tmp_path, "other-machine"), autoscaling=world.asg)
                second.append("ran")
            except GroupLocked as exc:
                second.append(exc)

    # WHEN a second run starts then (and does not wait)
    first = recover_volumes(world.ec2, "training", ctx(tmp_path, hook=start_second), autoscaling=world.asg)
    # THEN the second stops with a message that names the holder, when its lease expires, and what to do
    (err,) = second
    assert isinstance(err, GroupLocked), err
    assert f"another run holds group 'training': {socket.gethostname()}:{os.getpid()}:" in err.message
    assert "(volumes, tag spotkit:lock on the Auto Scaling group), its lease expires at " in err.message
    assert err.hint.startswith("wait for it to finish and run 'spotkit recover volumes --group training' again")
    # AND the first finished as if alone, and released the lease
    assert [p.status for p in first.placements] == ["attached", "attached"]
    assert_recovered_once(world, originals, replacements)
    assert lease_value(world) is None


@pytest.mark.parametrize("same_journal", [True, False], ids=["file-lock", "group-lease"])
def test_second_run_waits_for_the_first_and_finds_nothing_left(aws, tmp_path, same_journal):
    # GIVEN a run in the middle of a cross-AZ copy, and a second run started then that may wait
    world, originals, replacements = cross_az_world(aws)
    results: list = []
    started = threading.Event()

    def second_run():
        try:
            results.append(recover_volumes(world.ec2, "training",
                                           ctx(tmp_path, "journal" if same_journal else "other", lock_wait=120,
                                               lock_settle=0.05), autoscaling=world.asg))
        except Exception as exc:  # noqa: BLE001  (asserted below)
            results.append(exc)

    thread = threading.Thread(target=second_run)

    def start_second(step):
        if step == "snapshot-created" and not started.is_set():
            started.set()
            thread.start()

    # WHEN both run
    first = recover_volumes(world.ec2, "training", ctx(tmp_path, hook=start_second), autoscaling=world.asg)
    thread.join(timeout=300)
    # THEN the second waited, then found every volume back and did nothing
    assert not thread.is_alive()
    (second,) = results
    assert not isinstance(second, Exception), second
    assert (second.placements, second.actions) == ([], [])
    assert [p.status for p in first.placements] == ["attached", "attached"]
    # AND the end state is that of one run
    assert_recovered_once(world, originals, replacements)
    assert lease_value(world) is None


def _set_lease(world, value: str) -> None:
    world.asg.create_or_update_tags(Tags=[{"ResourceId": "training", "ResourceType": "auto-scaling-group",
                                           "Key": TAG_LOCK, "Value": value, "PropagateAtLaunch": False}])


def test_a_live_lease_of_another_machine_is_respected_and_an_expired_one_is_taken_over(aws, tmp_path):
    world, originals, replacements = cross_az_world(aws)
    future = format_time(dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=20))
    _set_lease(world, f"owner=builder-7:4242:abcd runbook=volumes expires={future}")
    # WHEN a run finds another machine's live lease: it stops, names it, and changes nothing
    with pytest.raises(GroupLocked) as err:
        recover_volumes(world.ec2, "training", ctx(tmp_path), autoscaling=world.asg)
    assert err.value.message.startswith(f"another run holds group 'training': builder-7:4242:abcd (volumes, tag "
                                        f"spotkit:lock on the Auto Scaling group), its lease expires at {future}")
    assert world.all_snapshots() == []
    # WHEN that lease has expired (its holder was killed): the next run takes it over and recovers everything
    past = format_time(dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=1))
    _set_lease(world, f"owner=builder-7:4242:abcd runbook=volumes expires={past}")
    result = recover_volumes(world.ec2, "training", ctx(tmp_path), autoscaling=world.asg)
    assert [p.status for p in result.placements] == ["attached", "attached"]
    assert_recovered_once(world, originals, replacements)
    assert lease_value(world) is None


def test_a_lease_of_a_dead_process_of_this_host_is_stale_at_once(aws, tmp_path):
    world, originals, replacements = cross_az_world(aws)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    future = format_time(dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=20))
    _set_lease(world, f"owner={socket.gethostname()}:{dead.pid}:dead0001 runbook=volumes expires={future}")
    result = recover_volumes(world.ec2, "training", ctx(tmp_path), autoscaling=world.asg)
    assert [p.status for p in result.placements] == ["attached", "attached"]
    assert_recovered_once(world, originals, replacements)


def test_a_run_whose_lease_was_taken_stops_before_its_next_change_and_the_rerun_resumes(aws, tmp_path):
    # GIVEN a run whose lease another run overwrote after its first snapshot (as a racing writer would)
    world, originals, replacements = cross_az_world(aws)
    future = format_time(dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=20))
    foreign = f"owner=builder-7:4242:abcd runbook=volumes expires={future}"

    def overwrite(step):
        if step == "snapshot-created":
            _set_lease(world, foreign)

    with pytest.raises(LockLost) as err:
        recover_volumes(world.ec2, "training", ctx(tmp_path, hook=overwrite), autoscaling=world.asg)
    # THEN it made nothing after the snapshot, and left the other run's lease alone
    assert "is now held by builder-7:4242:abcd" in err.value.message
    assert len(world.all_snapshots()) == 1
    assert not [v for v in world.all_volumes() if "spotkit:origin-volume" in tags(v)]
    assert lease_value(world) == foreign
    # WHEN the other run is gone (its lease removed) and the run is repeated, it resumes and makes nothing twice
    world.asg.delete_tags(Tags=[{"ResourceId": "training", "ResourceType": "auto-scaling-group", "Key": TAG_LOCK}])
    recover_volumes(world.ec2, "training", ctx(tmp_path), autoscaling=world.asg)
    assert_recovered_once(world, originals, replacements)


def _copy_like_a_racing_run(world, origin: str, snapshot_id: str) -> str:
    src = {k: v for k, v in tags(world.volume(origin)).items()}
    return world.ec2.create_volume(SnapshotId=snapshot_id, AvailabilityZone="us-east-1b", VolumeType="gp3",
                                   TagSpecifications=[{"ResourceType": "volume", "Tags": [
                                       {"Key": k, "Value": v} for k, v in {
                                           **src, "spotkit:origin-volume": origin, "spotkit:origin-snapshot": snapshot_id,
                                           "spotkit:target-az": "us-east-1b"}.items()]}])["VolumeId"]


def waiting_volumes_as_the_boot_part_sees_them(world) -> list[str]:
    """The boot part's query (modules/data_volume_boot.py): retained, available, for the device, not an origin."""
    origins = {tags(v)["spotkit:origin-volume"] for v in world.ec2.describe_volumes(Filters=[
        {"Name": "tag:spotkit:group", "Values": ["training"]}, {"Name": "tag-key", "Values": ["spotkit:origin-volume"]}])["Volumes"]}
    waiting = world.ec2.describe_volumes(Filters=[
        {"Name": "tag:spotkit:group", "Values": ["training"]}, {"Name": "tag:spotkit:device", "Values": ["/dev/sdf"]},
        {"Name": "tag:spotkit:retain", "Values": ["true"]}, {"Name": "status", "Values": ["available"]}])["Volumes"]
    return sorted(v["VolumeId"] for v in waiting if v["VolumeId"] not in origins)


def test_of_two_racing_copies_the_loser_is_tagged_superseded_and_never_offered(aws, tmp_path):
    # GIVEN a run that, right after making its copy, finds a second copy of the same volume made by a racing run
    world, (data,), (replacement,) = cross_az_world(aws, size=1)
    racing: list[str] = []

    def race(step):
        if step == "volume-created" and not racing:
            racing.append(_copy_like_a_racing_run(world, data, world.all_snapshots()[0]["SnapshotId"]))

    result = recover_volumes(world.ec2, "training", ctx(tmp_path, hook=race), autoscaling=world.asg)
    (p,) = result.placements
    ours = [m["id"] for m in result.made if m["kind"] == "volume"]
    # THEN one copy wins (the older; a tie goes to the smaller id, so racing runs agree) and is attached; the other
    # is kept, available, tagged superseded by the winner, and offered to nobody
    (loser, winner), = result.superseded_copies.items()
    assert {loser, winner} == {ours[0], racing[0]}
    assert p.status == "attached" and p.copy_volume_id == winner and world.devices(replacement)["/dev/sdf"] == winner
    lost = world.volume(loser)
    assert lost["State"] == "available"
    assert (tags(lost)["spotkit:superseded-by"], tags(lost)["spotkit:retain"]) == (winner, "superseded")
    assert waiting_volumes_as_the_boot_part_sees_them(world) == []
    # AND a re-run does not offer it either
    again = recover_volumes(world.ec2, "training", ctx(tmp_path), autoscaling=world.asg)
    assert (again.placements, again.actions) == ([], [])


def test_when_the_racing_run_attached_its_copy_first_this_runs_copy_is_the_superseded_one(aws, tmp_path):
    world, (data,), (replacement,) = cross_az_world(aws, size=1)
    racing: list[str] = []

    def race(step):
        if step == "volume-created" and not racing:
            other = _copy_like_a_racing_run(world, data, world.all_snapshots()[0]["SnapshotId"])
            world.ec2.attach_volume(VolumeId=other, InstanceId=replacement, Device="/dev/sdf")
            racing.append(other)

    result = recover_volumes(world.ec2, "training", ctx(tmp_path, hook=race), autoscaling=world.asg)
    (p,) = result.placements
    (winner,) = racing
    ours = [m["id"] for m in result.made if m["kind"] == "volume"]
    assert p.status == "attached" and p.copy_volume_id == winner
    assert world.devices(replacement)["/dev/sdf"] == winner
    assert result.superseded_copies == {ours[0]: winner}
    assert tags(world.volume(ours[0]))["spotkit:superseded-by"] == winner
    assert world.volume(ours[0])["State"] == "available"
    assert waiting_volumes_as_the_boot_part_sees_them(world) == []


def test_endpoint_gone_mid_run_ends_with_a_clear_error_and_the_rerun_resumes(aws, tmp_path):
    # GIVEN a run (a child process) against an endpoint that goes away right after its first snapshot
    from tests.support.moto_server import start_moto_server

    world, originals, replacements = cross_az_world(aws)
    doomed = start_moto_server()  # the same emulated account, another endpoint
    journal_dir = tmp_path / "journal"
    env = {**os.environ, "PYTHONPATH": str(TREE)}
    child = subprocess.Popen([sys.executable, "-m", "tests.support.runbook_child", doomed.url, str(journal_dir),
                              "training", "2", "pause"], cwd=TREE, env=env, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in child.stdout:
        if line.startswith("call 2 CreateSnapshot"):
            break
    doomed.stop()
    doomed._server._server.server_close()  # nothing listens any more: connections are refused
    child.stdin.write("go\n")
    child.stdin.close()
    child.wait(timeout=300)
    stderr = child.stderr.read()
    # THEN it ends with a clear error (no traceback) that says the journal is intact and what to do
    journal = journal_dir / "volumes-training.json"
    assert child.returncode == 1, stderr
    assert "Traceback" not in stderr
    assert stderr.startswith("error: lost the connection to AWS during 'volumes' on training: ")
    assert f"the journal {journal} is intact" in stderr and "run the same command again" in stderr
    # (the snapshot call was answered but its result never reached the journal: the kill-free equivalent of a
    # lost response; the journal is still valid JSON from the run before)
    json.loads(journal.read_text())
    assert len(world.all_snapshots()) == 1
    # WHEN the endpoint is back and the command is run again
    real = spotkit(aws, "--yes", journal_dir=journal_dir)
    # THEN it takes over the dead run's lease, resumes from the snapshot it finds, and makes nothing twice
    assert real.returncode == 0, real.stdout + real.stderr
    assert_recovered_once(world, originals, replacements)
    assert lease_value(world) is None


def test_the_lease_costs_the_same_calls_for_one_or_six_attachments(aws, tmp_path):
    from spotkit.runbooks.aws_calls import CallCounter

    counts = {}
    for size in (1, 6):
        world = SpotGroupWorld.all_reclaimed(aws, size)
        counter = CallCounter()
        asg = counter.attach(aws.client("autoscaling"))
        result = recover_volumes(world.ec2, "training", ctx(tmp_path / str(size)), autoscaling=asg)
        assert [p.status for p in result.placements] == ["attached"] * size
        counts[size] = dict(counter.by_operation)
    # take (read, write, read back: that read is the first check, so the first attachment needs no other), release
    # (read, delete)
    assert counts[1] == counts[6] == {"autoscaling:DescribeTags": 3, "autoscaling:CreateOrUpdateTags": 1,
                                      "autoscaling:DeleteTags": 1}


def test_cli_refuses_while_another_machine_holds_the_group_and_says_what_to_do(aws, tmp_path):
    world, originals, _ = cross_az_world(aws)
    future = format_time(dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=20))
    _set_lease(world, f"owner=builder-7:4242:abcd runbook=volumes expires={future}")
    done = spotkit(aws, "--yes", "--lock-wait", "0", journal_dir=tmp_path / "journal")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.splitlines() == [
        f"Error: another run holds group 'training': builder-7:4242:abcd (volumes, tag spotkit:lock on the Auto Scaling "
        f"group), its lease expires at {future} (waited 0 s)",
        "  next: wait for it to finish and run 'spotkit recover volumes --group training' again (add --lock-wait "
        "SECONDS to wait longer); if that run was killed on another machine, its lease expires by itself"]
    assert world.all_snapshots() == [] and all(world.volume(v)["State"] == "available" for v in originals)
