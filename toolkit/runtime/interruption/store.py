"""The journal: de-duplicates events (the first claim wins) and records every action.

Two implementations with one contract:

- ``DynamoDBStore``: a table with ``pk`` (the event id) and ``sk`` (``event`` for the claim item,
  ``action#<time>#<name>`` for each action), and a TTL attribute ``expires_at``. A claim is one
  conditional write, so two handlers (two Lambdas, a Lambda and a queue consumer, the agent) racing
  on the same warning act once.
- ``LocalFileStore``: a JSON-lines file for local runs; a thread lock plus ``fcntl`` file lock, and it
  re-reads lines other processes appended before deciding.

A claim answers:
- ``NEW``: act on it.
- ``DUPLICATE``: already handled (done, ignored or dropped) within the de-duplication window.
- ``IN_PROGRESS``: another worker holds a live lease; this copy is a duplicate delivery. If that worker
  dies, its lease runs out and the redelivered message claims the event again (actions are idempotent).

``finish(event_id, FAILED)`` releases the lease at once so a retry can claim it. ``finish`` also
records the instance's group (for ``spotkit status``). ``record_dropped(body, reason)`` journals a
message that can never be handled, with its reason. ``check()`` is a cheap read that fails with
``JournalError`` (a clear message and next step) when the journal is missing, not a spotkit journal, or
out of reach; ``events()`` lists every event for ``spotkit status``.

The local file survives a torn (cut-off) line, what a process killed mid-write leaves: it is skipped
and reported (``skipped_lines``), and the next append starts on a new line.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Optional, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from spotkit.runtime.interruption.events import InterruptionEvent
from spotkit.runtime.interruption.hints import aws_cli

log = logging.getLogger("spotkit.interruption")

NEW = "new"
DUPLICATE = "duplicate"
IN_PROGRESS = "in-progress"

# Final statuses of an event; a claim on an event in one of these is a duplicate.
DONE = "done"
IGNORED = "ignored"
DROPPED = "dropped"
FAILED = "failed"
CLAIMED = "claimed"
FINAL = (DONE, IGNORED, DROPPED)

DEFAULT_LEASE_SECONDS = 360
DEFAULT_DEDUPE_SECONDS = 6 * 3600
DROPPED_BODY_CHARS = 2000  # how much of a dropped message the journal keeps


class JournalError(Exception):
    """The journal cannot be used (missing, not a spotkit journal, out of reach). ``hint``: what to do."""

    def __init__(self, message: str, hint: str = ""):
        super().__init__(message)
        self.hint = hint


class EventStore(Protocol):
    def claim(self, event: InterruptionEvent, *, lease_seconds: int = DEFAULT_LEASE_SECONDS) -> str: ...
    def record(self, event_id: str, name: str, status: str, **detail: Any) -> None: ...
    def finish(self, event_id: str, status: str, reason: str = "", *, group: str = "") -> None: ...
    def record_dropped(self, body: Any, reason: str) -> str: ...
    def get(self, event_id: str) -> Optional[dict]: ...
    def actions(self, event_id: str) -> list[dict]: ...
    def check(self) -> None: ...
    def events(self) -> list[dict]: ...


def dropped_id(body: Any) -> str:
    """The journal key of a dropped message: the same body is one entry however often it comes."""
    text = body if isinstance(body, str) else json.dumps(body, sort_keys=True, default=str)
    return "dropped:" + hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:12]


def _body_text(body: Any) -> str:
    text = body if isinstance(body, str) else json.dumps(body, sort_keys=True, default=str)
    return text[:DROPPED_BODY_CHARS]


def _event_row(event_id: str, item: dict) -> dict:
    """One event as ``spotkit status`` reads it, from either journal."""
    event = item.get("event")
    if event is None and item.get("event_json"):
        try:
            event = json.loads(item["event_json"])
        except ValueError:
            event = {}
    event = event or {}
    return {"event_id": event_id, "group": item.get("group_name") or event.get("group_name") or "",
            "instance_id": item.get("instance_id") or event.get("instance_id") or "",
            "kind": item.get("kind") or event.get("kind") or "", "time": event.get("issued_at") or "",
            "status": item.get("status") or "", "reason": item.get("reason") or ""}


# --- DynamoDB -----------------------------------------------------------------------------------

class DynamoDBStore:
    """The journal in a DynamoDB table (created by ``spotkit.constructs.interruption_events``)."""

    def __init__(self, dynamodb, table_name: str, *, dedupe_seconds: int = DEFAULT_DEDUPE_SECONDS,
                 clock=time.time):
        self._ddb = dynamodb
        self.table_name = table_name
        self.dedupe_seconds = dedupe_seconds
        self._clock = clock

    def claim(self, event: InterruptionEvent, *, lease_seconds: int = DEFAULT_LEASE_SECONDS) -> str:
        """One conditional write: NEW when this caller now holds the event, else DUPLICATE (a final
        outcome is journaled) or IN_PROGRESS (another worker's lease is live). See ``claim_info``."""
        return self.claim_info(event, lease_seconds=lease_seconds)[0]

    def record(self, event_id: str, name: str, status: str, **detail: Any) -> None:
        now = self._clock()
        self._ddb.put_item(TableName=self.table_name, Item={
            "pk": {"S": event_id}, "sk": {"S": f"action#{now:.6f}#{name}"},
            "name": {"S": name}, "status": {"S": status},
            "detail": {"S": json.dumps(detail, sort_keys=True, default=str)},
            "at": {"N": f"{now:.6f}"}, "expires_at": {"N": str(int(now) + self.dedupe_seconds)},
        })

    def finish(self, event_id: str, status: str, reason: str = "", *, group: str = "") -> None:
        now = int(self._clock())
        update = "SET #s = :s, reason = :r, finished_at = :now, lease_until = :lease"
        values = {":s": {"S": status}, ":r": {"S": reason}, ":now": {"N": str(now)},
                  ":lease": {"N": "0" if status == FAILED else str(now)}}
        if group:
            update += ", group_name = :g"
            values[":g"] = {"S": group}
        self._ddb.update_item(
            TableName=self.table_name,
            Key={"pk": {"S": event_id}, "sk": {"S": "event"}},
            UpdateExpression=update, ExpressionAttributeNames={"#s": "status"}, ExpressionAttributeValues=values,
        )

    def record_dropped(self, body: Any, reason: str) -> str:
        key, now = dropped_id(body), int(self._clock())
        self._ddb.put_item(TableName=self.table_name, Item={
            "pk": {"S": key}, "sk": {"S": "event"}, "status": {"S": DROPPED}, "kind": {"S": "dropped"},
            "reason": {"S": reason}, "body": {"S": _body_text(body)}, "claimed_at": {"N": str(now)},
            "finished_at": {"N": str(now)}, "expires_at": {"N": str(now + self.dedupe_seconds)}})
        return key

    def check(self) -> None:
        """A cheap read of a key no event has: fails at once on a wrong table, key schema or endpoint
        (needs only ``dynamodb:GetItem``, which the handler has anyway)."""
        where = f"{self._ddb.meta.region_name}" + (f" at {self._ddb.meta.endpoint_url}" if self._ddb.meta.endpoint_url else "")
        key = {"pk": {"S": "spotkit:journal-check"}, "sk": {"S": "event"}}
        hint = aws_cli(self._ddb, "dynamodb", "list-tables", note="the tables here; pass the stack's "
                       "interruption_journal_table output as --journal-table")
        probe = ("dynamodb", "get-item", "--table-name", self.table_name, "--key", json.dumps(key))
        try:
            self._ddb.get_item(TableName=self.table_name, Key=key)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code == "ResourceNotFoundException":
                raise JournalError(f"journal table {self.table_name!r} does not exist in {where}", hint) from None
            if code == "ValidationException":
                raise JournalError(f"table {self.table_name!r} is not a spotkit journal (its key is not pk + sk): "
                                   f"{exc.response.get('Error', {}).get('Message', exc)}", hint) from None
            raise JournalError(f"cannot read the journal table {self.table_name!r} in {where}: {exc}", aws_cli(
                self._ddb, *probe, note="the same read, by the AWS CLI: its error names the credentials or the "
                "permission (dynamodb:GetItem on the table) that is missing")) from None
        except BotoCoreError as exc:
            raise JournalError(f"cannot reach DynamoDB in {where}: {exc}", aws_cli(
                self._ddb, *probe, note="does DynamoDB answer from here? then run the same command again")) from None

    def events(self) -> list[dict]:
        """Every event item (a paginated Scan of the ``event`` items) as ``spotkit status`` reads it."""
        out: list[dict] = []
        kwargs = {"TableName": self.table_name, "FilterExpression": "sk = :e",
                  "ExpressionAttributeValues": {":e": {"S": "event"}}}
        while True:
            page = self._ddb.scan(**kwargs)
            for item in page.get("Items", []):
                row = _plain(item)
                out.append(_event_row(row["pk"], row))
            if not page.get("LastEvaluatedKey"):
                return out
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def get(self, event_id: str) -> Optional[dict]:
        item = self._ddb.get_item(TableName=self.table_name, ConsistentRead=True,
                                  Key={"pk": {"S": event_id}, "sk": {"S": "event"}}).get("Item")
        return _plain(item) if item else None

    def actions(self, event_id: str) -> list[dict]:
        out: list[dict] = []
        kwargs = {"TableName": self.table_name, "ConsistentRead": True,
                  "KeyConditionExpression": "pk = :pk AND begins_with(sk, :a)",
                  "ExpressionAttributeValues": {":pk": {"S": event_id}, ":a": {"S": "action#"}}}
        while True:
            page = self._ddb.query(**kwargs)
            for item in page.get("Items", []):
                row = _plain(item)
                row["detail"] = json.loads(row.get("detail") or "{}")
                out.append(row)
            if not page.get("LastEvaluatedKey"):
                return out
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _plain(item: dict) -> dict:
    out: dict[str, Any] = {}
    for key, typed in item.items():
        (kind, value), = typed.items()
        out[key] = float(value) if kind == "N" else value
    return out


# --- a local JSON-lines file --------------------------------------------------------------------

class LocalFileStore:
    """The journal as a JSON-lines file: one line per claim, action and finish."""

    def __init__(self, path: str | os.PathLike, *, dedupe_seconds: int = DEFAULT_DEDUPE_SECONDS, clock=time.time):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.touch(exist_ok=True)
        self.dedupe_seconds = dedupe_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._offset = 0
        self._events: dict[str, dict] = {}
        self._actions: dict[str, list[dict]] = {}
        self._line = 0
        self.skipped_lines: list[tuple[int, str]] = []  # (line number, why) of torn or unreadable lines

    def _catch_up(self, fh) -> None:
        # Every writer holds the file lock while it appends, and so do we: a line without its newline is
        # not one being written but one a killed writer left (torn). Skip it (and report it); the next
        # append starts a new line, so it never swallows what comes after it.
        fh.seek(self._offset)
        for line in fh:
            self._offset += len(line.encode())
            self._line += 1
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                eid = row["event_id"]
                kind = row["type"]
            except (ValueError, KeyError, TypeError) as exc:
                why = "cut off (no end of line)" if not line.endswith("\n") else f"unreadable, cut off or not a journal row ({exc})"
                self.skipped_lines.append((self._line, why))
                log.warning("journal %s: skipped line %d: %s", self.path, self._line, why)
                continue
            if kind == "claim":
                prior = self._events.get(eid, {})
                self._events[eid] = {**prior, **row, "status": CLAIMED, "attempts": prior.get("attempts", 0) + 1}
            elif kind == "finish":
                update = {"status": row["status"], "reason": row.get("reason", ""), "lease_until": row["lease_until"]}
                if row.get("group"):
                    update["group_name"] = row["group"]
                self._events.setdefault(eid, {}).update(update)
            elif kind == "dropped":
                self._events[eid] = {**row, "status": DROPPED}
            else:
                self._actions.setdefault(eid, []).append(row)

    def _append(self, fh, row: dict) -> None:
        end = fh.seek(0, os.SEEK_END)
        line = json.dumps(row, sort_keys=True, default=str) + "\n"
        if end:
            fh.seek(end - 1)
            if fh.read(1) != "\n":  # a torn last line: end it, so this row stays a line of its own
                line = "\n" + line
            fh.seek(0, os.SEEK_END)
        fh.write(line)
        fh.flush()

    def _locked(self, fn):
        with self._lock, open(self.path, "r+", encoding="utf-8") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                self._catch_up(fh)
                result = fn(fh)
                self._catch_up(fh)
                return result
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def claim(self, event: InterruptionEvent, *, lease_seconds: int = DEFAULT_LEASE_SECONDS) -> str:
        def do(fh):
            now = self._clock()
            current = self._events.get(event.event_id)
            if current and current.get("expires_at", 0) >= now:
                if current.get("status") in FINAL:
                    return DUPLICATE
                if current.get("lease_until", 0) >= now:
                    return IN_PROGRESS
            self._append(fh, {"type": "claim", "event_id": event.event_id, "kind": event.kind,
                              "instance_id": event.instance_id, "claimed_at": now,
                              "lease_until": now + lease_seconds, "expires_at": now + self.dedupe_seconds,
                              "event": event.to_dict()})
            return NEW
        return self._locked(do)

    def record(self, event_id: str, name: str, status: str, **detail: Any) -> None:
        self._locked(lambda fh: self._append(fh, {"type": "action", "event_id": event_id, "name": name,
                                                  "status": status, "detail": detail, "at": self._clock()}))

    def finish(self, event_id: str, status: str, reason: str = "", *, group: str = "") -> None:
        now = self._clock()
        row = {"type": "finish", "event_id": event_id, "status": status, "reason": reason, "at": now,
               "lease_until": 0 if status == FAILED else now}
        if group:
            row["group"] = group
        self._locked(lambda fh: self._append(fh, row))

    def record_dropped(self, body: Any, reason: str) -> str:
        key, now = dropped_id(body), self._clock()
        self._locked(lambda fh: self._append(fh, {"type": "dropped", "event_id": key, "kind": "dropped",
                                                  "reason": reason, "body": _body_text(body), "at": now,
                                                  "expires_at": now + self.dedupe_seconds}))
        return key

    def check(self) -> None:
        """Opens, locks and reads the file (what every later call does). A file that is not text (a binary
        file passed by mistake) is refused, never appended to."""
        try:
            self._locked(lambda fh: None)
        except UnicodeDecodeError as exc:
            raise JournalError(f"the journal file {self.path} is not a spotkit journal: it is not UTF-8 text "
                               f"(byte {self._offset + exc.start}); spotkit does not write to it",
                               "pass a journal file of its own with --journal-file") from None
        except OSError as exc:
            raise JournalError(f"cannot use the journal file {self.path}: {exc}",
                               "pass --journal-file with a writable path") from None

    def events(self) -> list[dict]:
        return [_event_row(k, v) for k, v in self.all_events().items()]

    def get(self, event_id: str) -> Optional[dict]:
        return self._locked(lambda fh: dict(self._events[event_id]) if event_id in self._events else None)

    def actions(self, event_id: str) -> list[dict]:
        return self._locked(lambda fh: [dict(a) for a in self._actions.get(event_id, [])])

    def all_events(self) -> dict[str, dict]:
        return self._locked(lambda fh: {k: dict(v) for k, v in self._events.items()})


def create_journal_table(dynamodb, table_name: str) -> None:
    """Create the journal table as ``spotkit.constructs.interruption_events`` does (for local runs against an
    emulator; in AWS the stack owns it). An existing table is left as it is."""
    try:
        dynamodb.create_table(
            TableName=table_name, BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                  {"AttributeName": "sk", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}])
    except dynamodb.exceptions.ResourceInUseException:
        return
    dynamodb.get_waiter("table_exists").wait(TableName=table_name)
    dynamodb.update_time_to_live(TableName=table_name,
                                 TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"})


# --- batches (the wave path: ``Handler.handle_batch``) -------------------------------------------
#
# Additive to the contract above: a store that has these is used by the batch path with fewer calls;
# one without them is used through ``claim`` / ``record`` / ``finish``.
#
# - ``claim_info(event, lease_seconds) -> (answer, attempts)``: ``claim`` in one conditional write that
#   also answers how many times the event was claimed (``attempts`` > 1: a redelivery, whose actions
#   may already have run) and, when it loses, the current status from the same call (no second read).
# - ``settle_many([(event, attempts, claimed_at, status, reason, [(name, status, detail), ...], group), ...])``:
#   ``record`` every action and ``finish`` every event of a batch: the items ``record``/``finish`` leave.

def _dynamodb_claim_info(self: "DynamoDBStore", event: InterruptionEvent, *,
                         lease_seconds: int = DEFAULT_LEASE_SECONDS) -> tuple[str, int]:
    now = int(self._clock())
    try:
        answer = self._ddb.update_item(
            TableName=self.table_name,
            Key={"pk": {"S": event.event_id}, "sk": {"S": "event"}},
            UpdateExpression=("SET #s = :claimed, lease_until = :lease, expires_at = :exp, kind = :kind, "
                              "instance_id = :instance, claimed_at = :now, event_json = :json ADD attempts :one"),
            ConditionExpression=("attribute_not_exists(pk) OR expires_at < :now "
                                 "OR (NOT #s IN (:done, :ignored, :dropped) AND lease_until < :now)"),
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={
                ":claimed": {"S": CLAIMED}, ":lease": {"N": str(now + lease_seconds)},
                ":exp": {"N": str(now + self.dedupe_seconds)}, ":kind": {"S": event.kind},
                ":instance": {"S": event.instance_id}, ":now": {"N": str(now)},
                ":json": {"S": json.dumps(event.to_dict(), sort_keys=True)}, ":one": {"N": "1"},
                ":done": {"S": DONE}, ":ignored": {"S": IGNORED}, ":dropped": {"S": DROPPED},
            },
            ReturnValues="UPDATED_NEW", ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )
        return NEW, int(answer.get("Attributes", {}).get("attempts", {}).get("N", "1"))
    except self._ddb.exceptions.ConditionalCheckFailedException as exc:
        item = exc.response.get("Item")
        current = _plain(item) if item else (self.get(event.event_id) or {})
        answer = DUPLICATE if current.get("status") in FINAL else IN_PROGRESS
        return answer, int(current.get("attempts", 0) or 0)


def _dynamodb_settle_many(self: "DynamoDBStore", settlements) -> None:
    """Every action record and finish of a batch in BatchWriteItem calls of 25 items (one call per ~6
    events instead of 4 writes each). The finish is a Put of the whole event item, with what the claim
    wrote (kind, instance, event, attempts) and what ``finish`` sets (status, reason, finished_at,
    lease_until): BatchWriteItem has no UpdateItem. Unprocessed items are written again, then item by
    item. (TransactWriteItems would keep the finish an update, but costs 2x the writes in AWS and moto
    copies the whole table for each one.)"""
    now = self._clock()
    expires = {"N": str(int(now) + self.dedupe_seconds)}
    requests: list[dict] = []
    for row in settlements:
        event, attempts, claimed_at, status, reason, actions, group = row
        for k, (name, a_status, detail) in enumerate(actions):
            at = now + k * 1e-6  # distinct sort keys for two actions of one event
            requests.append({"PutRequest": {"Item": {
                "pk": {"S": event.event_id}, "sk": {"S": f"action#{at:.6f}#{name}"}, "name": {"S": name},
                "status": {"S": a_status}, "detail": {"S": json.dumps(detail, sort_keys=True, default=str)},
                "at": {"N": f"{at:.6f}"}, "expires_at": expires}}})
        requests.append({"PutRequest": {"Item": {
            "pk": {"S": event.event_id}, "sk": {"S": "event"}, "status": {"S": status}, "reason": {"S": reason},
            "finished_at": {"N": str(int(now))}, "lease_until": {"N": "0" if status == FAILED else str(int(now))},
            "expires_at": expires, "kind": {"S": event.kind}, "instance_id": {"S": event.instance_id},
            "claimed_at": {"N": str(int(claimed_at))}, "attempts": {"N": str(max(1, int(attempts)))},
            "event_json": {"S": json.dumps(event.to_dict(), sort_keys=True)},
            **({"group_name": {"S": group}} if group else {})}}})
    for start in range(0, len(requests), 25):
        pending = requests[start:start + 25]
        for _ in range(3):
            answer = self._ddb.batch_write_item(RequestItems={self.table_name: pending})
            pending = answer.get("UnprocessedItems", {}).get(self.table_name, [])
            if not pending:
                break
            time.sleep(0.05)
        for req in pending:  # still throttled: one by one (the client's retries back off)
            self._ddb.put_item(TableName=self.table_name, Item=req["PutRequest"]["Item"])


def _local_claim_info(self: "LocalFileStore", event: InterruptionEvent, *,
                      lease_seconds: int = DEFAULT_LEASE_SECONDS) -> tuple[str, int]:
    answer = self.claim(event, lease_seconds=lease_seconds)
    current = self.get(event.event_id) or {}
    return answer, int(current.get("attempts", 0) or 0)


def _local_settle_many(self: "LocalFileStore", settlements) -> None:
    rows = [(event.event_id, status, reason, actions, group)
            for event, _, _, status, reason, actions, group in settlements]

    def do(fh):
        now = self._clock()
        for eid, status, reason, actions, group in rows:
            for name, a_status, detail in actions:
                self._append(fh, {"type": "action", "event_id": eid, "name": name, "status": a_status,
                                  "detail": detail, "at": now})
            self._append(fh, {"type": "finish", "event_id": eid, "status": status, "reason": reason, "at": now,
                              "lease_until": 0 if status == FAILED else now, **({"group": group} if group else {})})
    self._locked(do)


DynamoDBStore.claim_info = _dynamodb_claim_info
DynamoDBStore.settle_many = _dynamodb_settle_many
LocalFileStore.claim_info = _local_claim_info
LocalFileStore.settle_many = _local_settle_many
