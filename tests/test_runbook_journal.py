"""The runbook journal (``spotkit.runbooks.journal``): an append-only, fsynced log over a JSON document.

- each step is one appended record, not a rewrite of the whole journal;
- a record torn by a kill is skipped and reported, and the next write does not glue onto it;
- a journal written by earlier versions (one JSON document) is read as it is and carried forward;
- a kill between compaction's rename and the log's removal replays to the same state;
- ``recover volumes`` killed (SIGKILL, child process) right after each of its journal records resumes and
  recovers everything once; with a torn record left behind it says so and still recovers.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from tests.test_runbooks_faults import TREE, assert_recovered_once, cross_az_world, ctx
from spotkit.runbooks.journal import COMPACT_AT_LEAST, Journal
from spotkit.runbooks.volumes import recover_volumes

STEPS_OF_A_TWO_VOLUME_COPY = 8  # 2 x (snapshot-created, volume-created, attach-called, attached)


def old_format_document(path, runbook="volumes", key="training"):
    """A journal exactly as spotkit wrote it before the log: one indented JSON document, rewritten per step."""
    data = {"runbook": runbook, "key": key, "runs": 1,
            "steps": {"snapshot:vol-1:us-east-1b": {"status": "done", "at": "2026-11-29T20:00:00+00:00",
                                                    "snapshot_id": "snap-1"},
                      "attach:vol-2": {"status": "attaching", "instance": "i-2", "device": "/dev/sdf"}},
            "made": [{"kind": "snapshot", "id": "snap-1", "step": "snapshot:vol-1:us-east-1b",
                      "at": "2026-11-29T20:00:00+00:00", "origin": "vol-1"}]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True), encoding="utf-8")
    return data


def test_steps_are_appended_to_the_log_and_the_end_of_the_run_compacts_them(tmp_path):
    # GIVEN a run's journal
    journal = Journal(tmp_path, "volumes", "training")
    journal.start_run()
    document = os.stat(journal.path)
    # WHEN it records fewer steps than the compaction threshold
    for n in range(COMPACT_AT_LEAST - 1):
        journal.record(f"attach:vol-{n}", status="attaching", instance=f"i-{n}", device="/dev/sdf")
    # THEN each is one line of the log and the document was not rewritten
    assert len(journal.log_path.read_bytes().splitlines()) == COMPACT_AT_LEAST - 1
    assert (os.stat(journal.path).st_ino, os.stat(journal.path).st_mtime_ns) == (document.st_ino, document.st_mtime_ns)
    # AND a reader sees every step (document + log)
    reread = Journal(tmp_path, "volumes", "training", read_only=True)
    assert reread.get(f"attach:vol-{COMPACT_AT_LEAST - 2}")["status"] == "attaching" and reread.skipped == []
    # WHEN the run ends
    journal.close()
    # THEN the document holds everything and the log is gone
    assert not journal.log_path.exists()
    data = json.loads(journal.path.read_text())
    assert len(data["steps"]) == COMPACT_AT_LEAST - 1 and data["runs"] == 1


def test_a_long_run_compacts_a_number_of_times_that_grows_with_the_log_not_per_step(tmp_path):
    # GIVEN a run over 500 volumes, each recorded twice (attaching, then done)
    journal = Journal(tmp_path, "volumes", "training")
    journal.start_run()
    replaced = []
    real_compact = journal.compact

    def counting_compact():
        replaced.append(len(journal.data["steps"]))
        real_compact()

    journal.compact = counting_compact
    for n in range(500):
        journal.record(f"attach:vol-{n}", status="attaching")
    journal.finish_many({f"attach:vol-{n}": {} for n in range(500)})
    # THEN the whole document was rewritten a handful of times, not once per record (1,000 records)
    assert 0 < len(replaced) <= 10, replaced
    journal.close()
    data = json.loads(journal.path.read_text())
    assert all(step["status"] == "done" for step in data["steps"].values()) and len(data["steps"]) == 500


def test_a_record_torn_by_a_kill_is_skipped_reported_and_never_glued_to_the_next(tmp_path):
    # GIVEN a journal whose log ends in a record cut short (the process died inside the write)
    journal = Journal(tmp_path, "volumes", "training")
    journal.start_run()
    journal.record("attach:vol-1", status="attaching", instance="i-1", device="/dev/sdf")
    journal._close_log()
    with open(journal.log_path, "ab") as fh:
        fh.write(b'{"steps":{"attach:vol-2":{"status":"atta')
    # WHEN it is read again
    resumed = Journal(tmp_path, "volumes", "training")
    # THEN the complete record is there, the torn one is not, and it is reported with where and why
    assert resumed.get("attach:vol-1")["status"] == "attaching"
    assert resumed.get("attach:vol-2") == {}
    assert len(resumed.skipped) == 1
    assert "line 2" in resumed.skipped[0] and "incomplete record" in resumed.skipped[0]
    # WHEN the resumed run writes its next record
    resumed.finish("attach:vol-1", instance="i-1", device="/dev/sdf")
    resumed.record("attach:vol-3", status="attaching")
    # THEN nothing of the torn record is left to spoil it: every record reads back, nothing is skipped
    again = Journal(tmp_path, "volumes", "training", read_only=True)
    assert again.skipped == []
    assert (again.get("attach:vol-1")["status"], again.get("attach:vol-3")["status"]) == ("done", "attaching")
    resumed.close()
    assert json.loads(resumed.path.read_text())["steps"]["attach:vol-1"]["status"] == "done"


def test_a_dry_run_reads_a_torn_log_and_writes_nothing(tmp_path):
    journal = Journal(tmp_path, "volumes", "training")
    journal.start_run()
    journal.record("attach:vol-1", status="attaching")
    journal._close_log()
    with open(journal.log_path, "ab") as fh:
        fh.write(b'{"steps":')
    before = (journal.path.read_bytes(), journal.log_path.read_bytes())
    dry = Journal(tmp_path, "volumes", "training", read_only=True)
    dry.finish("attach:vol-1")
    dry.close()
    assert len(dry.skipped) == 1 and dry.done("attach:vol-1")  # in memory only
    assert (journal.path.read_bytes(), journal.log_path.read_bytes()) == before


def test_a_journal_written_by_an_earlier_version_is_read_and_carried_forward(tmp_path):
    # GIVEN a journal in the format earlier versions wrote (no log)
    journal_file = tmp_path / "volumes-training.json"
    old = old_format_document(journal_file)
    # WHEN a new run opens it
    journal = Journal(tmp_path, "volumes", "training")
    # THEN it resumes from it
    assert journal.resumed and journal.done("snapshot:vol-1:us-east-1b")
    assert journal.get("snapshot:vol-1:us-east-1b")["snapshot_id"] == "snap-1"
    assert [m["id"] for m in journal.made] == ["snap-1"] and journal.skipped == []
    # WHEN the run goes on and ends
    journal.start_run()
    journal.made_resource("volume", "vol-9", "copy-volume:vol-1:us-east-1b", origin="vol-1")
    journal.finish("attach:vol-2", instance="i-2", device="/dev/sdf")
    journal.close()
    # THEN the document is still one JSON object of the same shape, holding the old entries and the new
    data = json.loads(journal_file.read_text())
    assert {"runbook", "key", "steps", "made", "runs"} <= set(data)
    assert data["runs"] == old["runs"] + 1
    assert data["steps"]["snapshot:vol-1:us-east-1b"] == old["steps"]["snapshot:vol-1:us-east-1b"]
    assert data["steps"]["attach:vol-2"]["status"] == "done"
    assert [m["id"] for m in data["made"]] == ["snap-1", "vol-9"]


def test_a_kill_between_compaction_and_removing_the_log_replays_to_the_same_state(tmp_path):
    # GIVEN a run whose log was folded into the document, but the log was not removed (killed in between)
    journal = Journal(tmp_path, "volumes", "training")
    journal.start_run()
    journal.made_resource("snapshot", "snap-1", "snapshot:vol-1:us-east-1b", origin="vol-1")
    journal.record("attach:vol-1", status="attaching")
    journal.finish("attach:vol-1")
    journal.start_run()
    journal.record("attach:vol-2", status="attaching")
    log = journal.log_path.read_bytes()
    journal.close()  # the document now holds everything
    journal.log_path.write_bytes(log)  # ... and the log is back, as if the unlink never happened
    # WHEN it is read again
    again = Journal(tmp_path, "volumes", "training", read_only=True)
    # THEN the state is the same: nothing counted twice, nothing listed twice, no step moved backwards
    assert again.data == json.loads(journal.path.read_text())
    assert again.data["runs"] == 2 and [m["id"] for m in again.made] == ["snap-1"]
    assert again.get("attach:vol-1")["status"] == "done"


def test_a_journal_document_that_is_not_json_is_a_clear_error(tmp_path):
    from spotkit.errors import ToolkitError

    (tmp_path / "volumes-training.json").write_text("{ not json", encoding="utf-8")
    with pytest.raises(ToolkitError) as err:
        Journal(tmp_path, "volumes", "training")
    assert "is not valid JSON" in err.value.message and "mv " in err.value.hint


def _run_child(aws, journal_dir, kill_after: int, mode: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(TREE)}
    return subprocess.run([sys.executable, "-m", "tests.support.runbook_child", aws.url, str(journal_dir), "training",
                           str(kill_after), mode], cwd=TREE, env=env, capture_output=True, text=True, timeout=300)


def test_an_unkilled_child_passes_the_steps_the_step_kill_test_counts(aws, tmp_path):
    world, originals, replacements = cross_az_world(aws)
    child = _run_child(aws, tmp_path / "j", 0, "step")
    assert child.returncode == 0, child.stderr
    steps = [line.split()[2] for line in child.stdout.splitlines() if line.startswith("step ")]
    assert steps == ["snapshot-created", "volume-created", "attach-called", "attached"] * 2
    assert len(steps) == STEPS_OF_A_TWO_VOLUME_COPY
    assert_recovered_once(world, originals, replacements)


@pytest.mark.parametrize("kill_after", range(1, STEPS_OF_A_TWO_VOLUME_COPY + 1))
def test_killed_right_after_any_journal_record_the_next_run_resumes_and_makes_nothing_twice(aws, tmp_path, kill_after):
    # GIVEN a cross-AZ copy of two volumes SIGKILLed right after its k-th step was journaled
    world, originals, replacements = cross_az_world(aws)
    journal_dir = tmp_path / "journal"
    child = _run_child(aws, journal_dir, kill_after, "step")
    assert child.returncode == -signal.SIGKILL, (child.returncode, child.stdout, child.stderr)
    # THEN what it journaled is in the log (the run never reached its compaction)
    killed = Journal(journal_dir, "volumes", "training", read_only=True)
    assert killed.log_path.exists() and killed.skipped == []
    made_before = {m["id"] for m in killed.made}
    assert made_before  # at least the first snapshot was recorded before the first step
    # WHEN the next run goes
    result = recover_volumes(world.ec2, "training", ctx(tmp_path), autoscaling=world.asg)
    # THEN every volume is back once, and the journal (compacted, the log gone) knows what both runs made
    assert_recovered_once(world, originals, replacements)
    assert result.resumed is True and result.journal_skipped == []
    assert made_before <= {m["id"] for m in result.made}
    assert not killed.log_path.exists()
    data = json.loads(killed.path.read_text())
    assert data["runs"] == 2
    existing = {("snapshot", s["SnapshotId"]) for s in world.all_snapshots()} | {
        ("volume", v["VolumeId"]) for v in world.all_volumes()}
    assert {(m["kind"], m["id"]) for m in data["made"]} <= existing


def test_a_torn_record_left_by_a_kill_is_reported_and_the_rerun_still_recovers_everything_once(aws, tmp_path):
    # GIVEN a run killed after its 2nd step, that was writing a 3rd record when it died (half a line in the log)
    world, originals, replacements = cross_az_world(aws)
    journal_dir = tmp_path / "journal"
    child = _run_child(aws, journal_dir, 2, "step")
    assert child.returncode == -signal.SIGKILL, child.stderr
    log = Journal(journal_dir, "volumes", "training", read_only=True).log_path
    with open(log, "ab") as fh:
        fh.write(b'{"steps":{"attach:vol-')
    # WHEN the next run goes
    result = recover_volumes(world.ec2, "training", ctx(tmp_path), autoscaling=world.asg)
    # THEN it says which record it skipped, and still puts every volume back once
    assert len(result.journal_skipped) == 1 and "incomplete record" in result.journal_skipped[0]
    assert str(log.name) in result.journal_skipped[0]
    assert_recovered_once(world, originals, replacements)
    assert not log.exists()
