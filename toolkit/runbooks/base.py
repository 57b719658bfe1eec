"""Runbook machinery: a registry of named runbooks, a journal of steps and resources, dry-run and hooks.

A runbook is a class registered under a name whose docstring lists its steps. It receives injected
boto3 clients and returns a result dataclass; it never prints. Every mutating AWS call goes through
:meth:`Runbook.mutate`, which in dry-run mode records "would ..." and calls nothing.

Resuming after a kill has two anchors, so a re-run never makes a second snapshot, volume or
attachment and never loses track of what it made:

- the **journal** (:mod:`spotkit.runbooks.journal`) under ``.spotkit/journal/``, a JSON document plus an
  append-only log with one fsynced record per step, listing the resources each step made (``Journal.made``);
- **idempotency tags** on every resource made (``spotkit:origin-volume``, ``spotkit:target-az``...),
  set atomically at creation with ``TagSpecifications``, so a resource made just before a kill (and
  before the journal write) is found by a filtered describe call; ``ClientToken`` where the API has one.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar

from botocore.exceptions import ConnectionClosedError, ConnectTimeoutError, EndpointConnectionError, ReadTimeoutError

from spotkit.errors import AwsCallError
from spotkit.runbooks.journal import Journal, journal_path  # noqa: F401  (Journal: re-exported)

DEFAULT_JOURNAL_DIR = Path(".spotkit") / "journal"

RUNBOOKS: dict[str, type["Runbook"]] = {}

# Calls that make a resource (a second one would be a duplicate): the lease is checked right before each.
CREATING_CALLS = frozenset({"create_snapshot", "create_volume", "copy_snapshot", "create_tags"})

# botocore's "the endpoint is gone" (after its own retries): the run stops with a clear error and resumes later.
CONNECTION_ERRORS = (EndpointConnectionError, ConnectionClosedError, ConnectTimeoutError, ReadTimeoutError)


def register(name: str):
    """Class decorator: register a runbook under ``name`` (its docstring lists the steps)."""

    def deco(cls):
        cls.name = name
        RUNBOOKS[name] = cls
        return cls

    return deco


def steps_of(name: str) -> list[str]:
    """The numbered steps from a runbook's docstring (lines starting with ``N.``)."""
    doc = RUNBOOKS[name].__doc__ or ""
    return [line.strip() for line in doc.splitlines() if line.strip()[:2].rstrip(".").isdigit() and "." in line.strip()[:3]]


def now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


def token(*parts: str) -> str:
    """A deterministic idempotency token (ClientToken) from the identity of an action."""
    return "spotkit-" + hashlib.sha256("|".join(parts).encode()).hexdigest()[:40]


@dataclass
class Action:
    """One mutating call, done or (in dry-run) only described."""

    description: str
    done: bool


@dataclass
class RunContext:
    """What every runbook run receives besides its clients.

    - ``dry_run``: describe every mutating call ("would ...") instead of making it.
    - ``journal_dir``: where journals live. Default ``.spotkit/journal`` in the working directory.
    - ``progress``: called with (done, total, label) as work advances (the CLI draws a bar).
    - ``hook``: called with a step name after each step; tests raise from it to simulate a kill.
    - ``wait_delay`` / ``wait_attempts``: waiter polling (seconds) and bound.
    - ``lock_wait``: seconds a run waits for another run on the same group to let go (``spotkit.runbooks.lock``)
      before it stops with ``GroupLocked``; ``lock_settle`` / ``lock_ttl``: the lease's re-check delay and life.
    """

    dry_run: bool = False
    journal_dir: str | Path = DEFAULT_JOURNAL_DIR
    progress: Callable[[int, int, str], None] | None = None
    hook: Callable[[str], None] | None = None
    wait_delay: float = 5.0
    wait_attempts: int = 120
    lock_wait: float = 0.0
    lock_settle: float = 1.0
    lock_ttl: float = 1800.0


class Runbook:
    """Base class: subclasses are registered with ``@register(name)`` and list their steps in the docstring."""

    name: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs):
        """A subclass's ``run`` ends (returning or raising) by compacting the journals it opened."""
        super().__init_subclass__(**kwargs)
        run = cls.__dict__.get("run")
        if run is None or getattr(run, "_closes_journals", False):
            return

        @functools.wraps(run)
        def run_then_close(self, *args, **kw):
            try:
                return run(self, *args, **kw)
            finally:
                self.close_journals()

        run_then_close._closes_journals = True
        cls.run = run_then_close

    def __init__(self, ctx: RunContext | None = None):
        self.ctx = ctx or RunContext()
        self.actions: list[Action] = []
        self.run_lock = None  # a toolkit.runbooks.lock.RunLock while a real run holds its group
        self.journals: list[Journal] = []  # opened by this run; compacted when it ends
        self.journal_skipped: list[str] = []  # records of an earlier run's log that could not be read

    def journal(self, key: str) -> Journal:
        journal = Journal(self.ctx.journal_dir, self.name, key, read_only=self.ctx.dry_run)
        self.journals.append(journal)
        self.journal_skipped.extend(f"{journal.path.parent}/{s}" for s in journal.skipped)
        return journal

    def close_journals(self) -> None:
        """Compact every journal this run opened (the document holds everything; the log is gone)."""
        journals, self.journals = self.journals, []
        for journal in journals:
            journal.close()

    @contextlib.contextmanager
    def locked(self, group: str, autoscaling=None):
        """Hold the group for this run (file lock on the journal, lease tag on the group); nothing in dry run.

        An endpoint that stops answering ends the run with an ``AwsCallError`` (the journal, written after
        every step, stays intact and the next run resumes from it), never with a traceback.
        """
        from spotkit.runbooks.lock import RunLock

        journal_file = journal_path(self.ctx.journal_dir, self.name, group)  # read after the lock is held
        try:
            if self.ctx.dry_run:
                yield
                return
            self.run_lock = RunLock(group, self.name, journal_file, autoscaling, wait=self.ctx.lock_wait,
                                    settle=self.ctx.lock_settle, ttl=self.ctx.lock_ttl)
            self.run_lock.acquire()
            try:
                yield
            finally:
                try:
                    self.close_journals()  # compacted while the file lock is still held
                finally:
                    lock, self.run_lock = self.run_lock, None
                    try:
                        lock.release()
                    except CONNECTION_ERRORS:
                        lock.file.release()  # the lease expires by itself (or at once for a dead process of this host)
        except CONNECTION_ERRORS as exc:
            raise AwsCallError(
                f"lost the connection to AWS during '{self.name}' on {group}: {exc}",
                hint=f"check the network or --endpoint-url, then run the same command again: the journal "
                     f"{journal_file} is intact and the run resumes where it stopped, creating nothing twice",
            ) from exc

    def mutate(self, description: str, call: Callable[..., Any], **kwargs: Any) -> Any:
        """Make one mutating AWS call, or in dry-run only say what it would do and return None.

        A real call is made only while this run still holds its group's lease: checked right before every
        call that creates something (``CREATING_CALLS``), before the others at most every ``LEASE_CHECK_SECONDS``
        (so N attachments do not cost N more reads), and renewed when due.
        """
        if self.ctx.dry_run:
            self.actions.append(Action(f"would {description}", done=False))
            return None
        if self.run_lock is not None:
            self.run_lock.check(force=getattr(call, "__name__", "") in CREATING_CALLS)
        result = call(**kwargs)
        self.actions.append(Action(description, done=True))
        return result

    def step(self, name: str) -> None:
        if self.ctx.hook is not None:
            self.ctx.hook(name)

    def progress(self, done: int, total: int, label: str) -> None:
        if self.ctx.progress is not None:
            self.ctx.progress(done, total, label)
