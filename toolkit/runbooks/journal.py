"""The runbook journal: steps done and resources made by one runbook on one key, kept across kills.

Two files per journal, ``<dir>/<runbook>-<key>.json`` and ``<dir>/<runbook>-<key>.json.log``:

- the **document** (``.json``): the whole journal as one JSON object (``runbook``, ``key``, ``steps``,
  ``made``, ``runs``), the format every earlier spotkit wrote, so an old journal is read as it is. It is
  only ever replaced whole: written to a temporary file, fsynced, renamed over, the directory fsynced.
- the **log** (``.json.log``): the records written since the document, one JSON object per line, each
  written with one ``write`` and fsynced before the runbook goes on. A step costs one short append,
  not a rewrite of the whole journal (which made a run over N volumes O(N^2)).

Reading loads the document and replays the log over it. A record torn by a kill (the last line, without
its newline, or a line that is not JSON) is skipped and reported in ``Journal.skipped``; the next write
compacts first, so a torn tail is never glued to a new record.

Compaction writes the document from memory and then removes the log: at the start of a run
(``start_run``), at its end (``close``), and when the log holds more records than the document has
entries (so the total written stays linear in the run's length). Every record *sets* values (a step's
fields, a resource by id, the run count), never adds to them, so replaying a log over a document that
already holds it (a kill between the rename and the removal) changes nothing.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from spotkit.errors import ToolkitError

LOG_SUFFIX = ".log"
COMPACT_AT_LEAST = 64  # log records before an in-run compaction is considered (then: more records than entries)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat()


def journal_path(directory: str | Path, runbook: str, key: str) -> Path:
    """The document of the journal of ``runbook`` on ``key`` (the log is this path + ``.log``)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in key)
    return Path(directory) / f"{runbook}-{safe}.json"


class Journal:
    """Steps done and resources made by one runbook run (see the module doc for the files).

    ``read_only``: a dry run reads the journal (to preview the resume) and never writes it.
    """

    def __init__(self, directory: str | Path, runbook: str, key: str, *, read_only: bool = False):
        self.path = journal_path(directory, runbook, key)
        self.log_path = Path(str(self.path) + LOG_SUFFIX)
        self.read_only = read_only
        self.data: dict[str, Any] = {"runbook": runbook, "key": key, "steps": {}, "made": [], "runs": 0}
        self.skipped: list[str] = []  # records of the log that could not be read (torn by a kill)
        self._log = None  # the open log file while records are appended
        self._log_records = 0
        self._torn_tail = False
        if self.path.is_file():
            try:
                self.data = json.loads(self.path.read_text(encoding="utf-8"))
            except ValueError as exc:
                raise ToolkitError(
                    f"the runbook journal {self.path} is not valid JSON ({exc})",
                    hint=f"move it aside (mv {self.path} {self.path}.bad) and run the same command again: the "
                         "resources a run made carry idempotency tags, so nothing is made twice") from exc
        self._replay()
        self.resumed = bool(self.data.get("steps"))

    # --- reading ------------------------------------------------------------------------------

    def _replay(self) -> None:
        if not self.log_path.is_file():
            return
        raw = self.log_path.read_bytes()
        lines = raw.split(b"\n")
        tail = lines.pop()  # b"" when the log ends with a newline, else a record torn by a kill
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                if not isinstance(record, dict):
                    raise ValueError("not a JSON object")
            except ValueError as exc:
                self.skipped.append(f"{self.log_path.name} line {n}: {exc}")
                self._torn_tail = True  # rewrite it away on the next write
                continue
            self._apply(record)
            self._log_records += 1
        if tail:
            self.skipped.append(f"{self.log_path.name} line {len(lines) + 1}: incomplete record "
                                f"({len(tail)} bytes, no newline: the run was killed while writing it)")
            self._torn_tail = True

    def _apply(self, record: dict) -> None:
        for step, values in (record.get("steps") or {}).items():
            self.data["steps"].setdefault(step, {}).update(values)
        made = record.get("made")
        if made and not any(m["id"] == made["id"] for m in self.data["made"]):
            self.data["made"].append(made)
        if "runs" in record:
            self.data["runs"] = int(record["runs"])

    @property
    def made(self) -> list[dict]:
        return list(self.data["made"])

    def done(self, step: str) -> bool:
        return self.data["steps"].get(step, {}).get("status") == "done"

    def get(self, step: str) -> dict:
        return self.data["steps"].get(step, {})

    # --- writing ------------------------------------------------------------------------------

    def record(self, step: str, **values: Any) -> None:
        self._write({"steps": {step: values}})

    def finish(self, step: str, **values: Any) -> None:
        self.record(step, status="done", at=_now(), **values)

    def finish_many(self, steps: dict[str, dict]) -> None:
        """Mark several steps done with one record."""
        at = _now()
        self._write({"steps": {step: {"status": "done", "at": at, **values} for step, values in steps.items()}})

    def made_resource(self, kind: str, resource_id: str, step: str, **extra: Any) -> None:
        if any(m["id"] == resource_id for m in self.data["made"]):
            return
        self._write({"made": {"kind": kind, "id": resource_id, "step": step, "at": _now(), **extra}})

    def start_run(self) -> None:
        """Count a run and compact (the document then exists from a run's first step on)."""
        self._apply({"runs": int(self.data.get("runs", 0)) + 1})
        self.compact()

    def _write(self, record: dict) -> None:
        self._apply(record)
        if self.read_only:
            return
        if self._torn_tail:
            self.compact()  # the state in memory (the record included) replaces the document and the torn log
            return
        line = (json.dumps(record, sort_keys=True, default=str, separators=(",", ":")) + "\n").encode()
        if self._log is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._log = open(self.log_path, "ab", buffering=0)
        self._log.write(line)
        os.fsync(self._log.fileno())
        self._log_records += 1
        if self._log_records >= COMPACT_AT_LEAST and self._log_records > len(self.data["steps"]) + len(self.data["made"]):
            self.compact()

    def compact(self) -> None:
        """Write the document from memory (atomically, fsynced), then remove the log."""
        if self.read_only:
            return
        self._close_log()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".journal-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(self.data, fh, indent=2, sort_keys=True, default=str)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        _fsync_dir(self.path.parent)
        with contextlib.suppress(OSError):
            os.unlink(self.log_path)
        self._log_records = 0
        self._torn_tail = False

    def close(self) -> None:
        """End of a run: compact when the log holds anything, and close it."""
        if self.read_only:
            return
        if self._log_records or self._torn_tail or self.log_path.exists():
            self.compact()
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
