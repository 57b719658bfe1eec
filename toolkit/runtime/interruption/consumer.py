"""The queue consumer behind ``spotkit handle-events --queue-url`` (NTH's queue mode).

- ``concurrency`` workers (threads), each receiving up to ``batch_size`` (10) messages and handling them
  as one batch (``Handler.handle_batch``); a worker receives only when it is free, so nothing waits
  invisible on the queue. Workers share only thread-safe boto3 clients (size their connection pools to
  the workers: ``client_config``) and hold no lock while calling AWS.
- While a message is being handled its visibility timeout is extended every third of the timeout, so a
  slow drain (a lifecycle action waiting for ECS tasks) is not redelivered to another consumer.
- Each message is deleted (DeleteMessageBatch) when every event in it ended in a final outcome (acted,
  duplicate, ignored, dropped); otherwise it is made visible again after ``retry_delay_seconds``
  (transient failure) or that doubled per delivery up to ``visibility_timeout`` (another consumer holds
  the event): after the queue's maxReceiveCount it moves to the dead-letter queue. A copy of an event
  another worker of this consumer is handling waits for it (up to ``retry_delay_seconds``) and is then
  deleted as a duplicate, instead of going back to the queue. An action that failed
  makes its event ``failed`` in the journal, and the message comes back after ``retry_delay_seconds``.
- ``run`` first checks the queue once (GetQueueAttributes): a wrong URL, endpoint or credentials stop
  there with a clear ``ConsumerError``. After that, an outage is ridden out: each worker retries a failing
  receive with its own growing pause (``receive_backoff_seconds`` doubled per failure, at most
  ``max_backoff_seconds``) for up to ``outage_budget_seconds`` (default 15 minutes) since its first
  failure in a row; a receive that works resets it, and the worker carries on where it was (messages in
  flight are settled as usual). Only a worker whose outage outlasts the budget ends the run
  (``ConsumerError``); an error retrying cannot fix (no such queue, access denied, bad credentials) ends
  it at once. The clock and the pause are injectable (``clock``, ``wait``), so tests need no real outage.
- ``stats.problems()``: the messages whose last outcome was a failure, a retry, or a drop because they
  cannot be read, each with its message id and reasons (what ``--until-empty`` reports and exits 1 for).
- ``stop()`` (SIGTERM/SIGINT when ``install_signal_handlers()`` was called) is a clean shutdown: no more
  receives; handling in progress finishes (each is bounded by its event's deadline); then ``run`` returns.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Optional

from botocore.exceptions import BotoCoreError, ClientError

from spotkit.runtime.interruption.events import from_message_body
from spotkit.runtime.interruption.handler import IN_PROGRESS, Handler, Outcome
from spotkit.runtime.interruption.hints import aws_cli

log = logging.getLogger("spotkit.interruption")

DEFAULT_OUTAGE_BUDGET_SECONDS = 15 * 60
DEFAULT_MAX_BACKOFF_SECONDS = 30.0
# Errors receiving that retrying cannot fix.
FATAL_RECEIVE_CODES = frozenset({
    "AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist", "AccessDenied", "AccessDeniedException",
    "InvalidClientTokenId", "UnrecognizedClientException", "SignatureDoesNotMatch", "ExpiredToken",
    "InvalidAddress", "InvalidSecurity",
})


class ConsumerError(Exception):
    """The queue cannot be consumed. ``hint``: what to do next."""

    def __init__(self, message: str, hint: str = ""):
        super().__init__(message)
        self.hint = hint


def client_config(workers: int):
    """botocore settings for the clients ``workers`` threads share: a connection pool per client with a
    connection for every worker (plus the visibility extender and one spare; botocore's default is 10,
    so 16 workers would queue for connections), and adaptive retries, which back off and rate-limit the
    client itself when AWS throttles (in a real wave ELB, ECS and SSM do)."""
    from spotkit.runtime.interruption.retries import botocore_config

    return botocore_config("handler", max_pool_connections=max(10, workers + 2))


@dataclass
class ConsumerStats:
    received: int = 0
    deleted: int = 0
    returned: int = 0
    extended: int = 0
    outcomes: Counter = field(default_factory=Counter)
    receive_failures: int = 0  # receives that failed and were retried (an outage ridden out)
    # Message id -> the outcomes of its last handling (a message handled again replaces its entry).
    last: dict = field(default_factory=dict)

    def problems(self) -> list[dict]:
        """Messages whose last handling failed, was kept for retry, or dropped them as unreadable."""
        out = []
        for message_id, outcomes in self.last.items():
            bad = [o for o in outcomes if o.trouble]
            if bad:
                out.append({"message_id": message_id,
                            "outcomes": [{"status": o.status, "kind": o.kind, "instance": o.instance_id,
                                          "reason": o.reason} for o in bad]})
        return out

    def to_dict(self) -> dict:
        return {"received": self.received, "deleted": self.deleted, "returned": self.returned,
                "visibility_extensions": self.extended, "outcomes": dict(self.outcomes),
                "receive_failures": self.receive_failures, "problems": self.problems()}


class QueueConsumer:
    def __init__(self, sqs, queue_url: str, handler: Handler, *, concurrency: int = 8, visibility_timeout: int = 60,
                 wait_seconds: int = 10, retry_delay_seconds: int = 10, extend_every_seconds: Optional[float] = None,
                 batch_size: int = 10, outage_budget_seconds: float = DEFAULT_OUTAGE_BUDGET_SECONDS,
                 receive_backoff_seconds: float = 2.0, max_backoff_seconds: float = DEFAULT_MAX_BACKOFF_SECONDS,
                 clock: Callable[[], float] = time.monotonic, wait: Optional[Callable[[float], object]] = None):
        if concurrency < 1:
            raise ValueError("concurrency must be 1 or more")
        if outage_budget_seconds < 0:
            raise ValueError("outage_budget_seconds must be 0 or more")
        if not 1 <= batch_size <= 10:
            raise ValueError("batch_size must be between 1 and 10 (SQS receives at most 10 messages)")
        if visibility_timeout < 10:
            raise ValueError("visibility_timeout must be at least 10 seconds")
        self.sqs = sqs
        self.queue_url = queue_url
        self.handler = handler
        self.concurrency = concurrency
        self.visibility_timeout = visibility_timeout
        self.wait_seconds = wait_seconds
        self.retry_delay_seconds = retry_delay_seconds
        self.extend_every_seconds = extend_every_seconds or max(1.0, visibility_timeout / 3)
        self.stats = ConsumerStats()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.batch_size = batch_size
        self.outage_budget_seconds = outage_budget_seconds
        self.receive_backoff_seconds = receive_backoff_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self._clock = clock
        self._wait = wait or self._stop.wait
        self._error: Optional[ConsumerError] = None
        self._reserved = 0  # messages received or being received, against max_messages
        self._returning_until = 0.0  # a returned message is visible again by then: not idle before
        self._inflight: dict[str, str] = {}  # message id -> receipt handle
        # Event id -> this consumer's batches holding a message about it: a copy of an event another batch of
        # this process is handling waits for that batch to settle instead of going back to the queue
        # (``_hold_copies``).
        self._holders: dict[str, list[int]] = {}
        self._waiting: set[tuple[str, int]] = set()  # (event id, batch) of copies waiting in ``_hold_copies``
        self._settled = threading.Condition(self._lock)

    # --- control --------------------------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT request a clean shutdown (main thread only)."""
        def on_signal(signum, _frame):
            log.info("received %s: finishing messages in progress, receiving no more", signal.Signals(signum).name)
            self.stop()
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

    # --- the loop -------------------------------------------------------------------------------

    def run(self, *, stop_when_idle: bool = False, max_messages: Optional[int] = None) -> ConsumerStats:
        """Consume until ``stop()``; with ``stop_when_idle``, also when the queue is empty and nothing is in
        flight; with ``max_messages``, after receiving that many. Raises ``ConsumerError`` (after the
        messages in flight are settled) when receiving keeps failing.

        ``concurrency`` workers each receive up to ``batch_size`` messages, handle them as one batch
        (``Handler.handle_batch``: the AWS calls are shared by the batch) and settle them with one
        DeleteMessageBatch / ChangeMessageVisibilityBatch. Workers share nothing but the (thread-safe)
        boto3 clients and this object's counters: no lock is held while AWS is called."""
        self.check()
        extender = threading.Thread(target=self._extend_loop, name="spotkit-visibility", daemon=True)
        extender.start()
        workers = [threading.Thread(target=self._work, args=(stop_when_idle, max_messages),
                                    name=f"spotkit-handler-{n}", daemon=True) for n in range(self.concurrency)]
        for t in workers:
            t.start()
        for t in workers:
            t.join()
        self._stop.set()
        extender.join(timeout=5)
        if self._error is not None:
            raise self._error
        return self.stats

    def check(self) -> None:
        """One GetQueueAttributes: a queue that does not exist, a wrong endpoint or credentials stop here,
        before any worker starts (an outage later is ridden out; a mistake now is not an outage)."""
        try:
            self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])
        except ClientError as exc:
            raise ConsumerError(f"cannot receive from {self.queue_url}: {exc}", self._queues_hint()) from None
        except BotoCoreError as exc:
            raise ConsumerError(f"cannot reach {self.queue_url}: {exc}", self._reach_hint(
                "messages stay on the queue until handled")) from None

    def _queues_hint(self) -> str:
        return aws_cli(self.sqs, "sqs", "list-queues", note="the queues these credentials see here; pass the "
                       "stack's interruption_queue_url output as --queue-url")

    def _reach_hint(self, then: str) -> str:
        return aws_cli(self.sqs, "sqs", "get-queue-attributes", "--queue-url", self.queue_url, "--attribute-names",
                       "QueueArn", note=f"does the queue answer from here? then run the same command again ({then})")

    def _reserve(self, max_messages: Optional[int]) -> int:
        with self._lock:
            if max_messages is None:
                return self.batch_size
            n = max(0, min(self.batch_size, max_messages - self._reserved))
            self._reserved += n
            return n

    def _unreserve(self, n: int, max_messages: Optional[int]) -> None:
        if max_messages is not None and n > 0:
            with self._lock:
                self._reserved -= n

    def _idle(self) -> bool:
        with self._lock:
            return not self._inflight and time.monotonic() >= self._returning_until

    def _queue_empty(self) -> bool:
        """Nothing left in the queue, not even invisible messages: a receive whose answer was lost (a
        timeout) leaves its messages invisible until their visibility runs out; ``--until-empty`` waits
        for them instead of exiting with them still queued."""
        try:
            attrs = self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=[
                "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed"])["Attributes"]
        except (ClientError, BotoCoreError) as exc:
            log.warning("reading the depth of %s failed: %s", self.queue_url, exc)
            return False
        return all(int(attrs.get(k, "0")) == 0 for k in ("ApproximateNumberOfMessages",
                                                         "ApproximateNumberOfMessagesNotVisible",
                                                         "ApproximateNumberOfMessagesDelayed"))

    def _work(self, stop_when_idle: bool, max_messages: Optional[int]) -> None:
        outage = _Outage()  # this worker's own: one worker's failures never end another's patience
        while not self._stop.is_set():
            want = self._reserve(max_messages)
            if want == 0:
                return
            try:
                messages = self.sqs.receive_message(
                    QueueUrl=self.queue_url, MaxNumberOfMessages=want, VisibilityTimeout=self.visibility_timeout,
                    WaitTimeSeconds=1 if stop_when_idle else self.wait_seconds,
                    AttributeNames=["ApproximateReceiveCount"]).get("Messages", [])
            except (ClientError, BotoCoreError) as exc:
                self._unreserve(want, max_messages)
                pause = self._receive_failed(exc, outage)
                if pause is None:
                    return
                self._wait(pause)
                continue
            if outage.failures:
                log.info("receiving from %s works again after %d failed attempt(s) over %.0f s", self.queue_url,
                         outage.failures, self._clock() - outage.since)
                outage.failures, outage.since = 0, 0.0
            self._unreserve(want - len(messages), max_messages)
            if not messages:
                if stop_when_idle and self._idle() and self._queue_empty():
                    return
                continue
            with self._lock:
                self.stats.received += len(messages)
                for m in messages:
                    self._inflight[m["MessageId"]] = m["ReceiptHandle"]
            self._handle(messages)

    def _receive_failed(self, exc: Exception, outage: "_Outage") -> Optional[float]:
        """Count a failed receive of one worker; the pause before its next one, or None when the run must
        end (the error is kept for ``run`` to raise and every worker stops): at once for an error retrying
        cannot fix, else once this worker's outage has lasted ``outage_budget_seconds``."""
        code = exc.response.get("Error", {}).get("Code", "") if isinstance(exc, ClientError) else ""
        now = self._clock()
        if not outage.failures:
            outage.since = now
        outage.failures += 1
        lasted = now - outage.since
        with self._lock:
            self.stats.receive_failures += 1
            if code in FATAL_RECEIVE_CODES:
                self._error = self._error or ConsumerError(f"cannot receive from {self.queue_url}: {exc}",
                                                           self._queues_hint())
            elif lasted >= self.outage_budget_seconds:
                self._error = self._error or ConsumerError(
                    f"receiving from {self.queue_url} failed for {lasted:.0f} s ({outage.failures} attempts; the "
                    f"outage budget is {self.outage_budget_seconds:.0f} s); last error: {exc}",
                    self._reach_hint("messages not handled stay on the queue; --outage-budget-minutes sets how "
                                     "long an outage is ridden out"))
            if self._error is not None:
                self._stop.set()
                return None
        pause = min(self.max_backoff_seconds, self.receive_backoff_seconds * 2 ** (outage.failures - 1),
                    max(0.0, self.outage_budget_seconds - lasted))
        log.warning("receiving from %s failed (attempt %d, %.0f s into the outage, retrying in %.1f s): %s",
                    self.queue_url, outage.failures, lasted, pause, exc)
        return pause

    def _handle(self, messages: list[dict]) -> None:
        token = id(messages)
        event_ids = {eid for m in messages for eid in _event_ids(m.get("Body", ""))}
        with self._lock:
            for eid in event_ids:
                self._holders.setdefault(eid, []).append(token)
        try:
            results = self._handle_bodies(messages)
            held, rest = self._hold_copies(messages, results, token, event_ids)
            self._settle(rest)
            if held:  # the batch that handled their event has settled: handled again, they are duplicates
                self._settle(list(zip(held, self._handle_bodies(held))))
        finally:
            self._release(token, event_ids)

    def _release(self, token: int, event_ids) -> None:
        with self._settled:
            for eid in event_ids:
                holders = self._holders.get(eid, [])
                if token in holders:
                    holders.remove(token)
                if not holders:
                    self._holders.pop(eid, None)
                self._waiting.discard((eid, token))
            self._settled.notify_all()

    def _handle_bodies(self, messages: list[dict]) -> list[list[Outcome]]:
        try:
            return self.handler.handle_batch([m.get("Body", "") for m in messages])
        except Exception:  # a bug: each message alone, so only the one that causes it is kept (then the DLQ)
            log.exception("handling %d message(s) together failed; handling each alone", len(messages))
            return [self._handle_alone(m) for m in messages]

    def _handle_alone(self, message: dict) -> list[Outcome]:
        try:
            return self.handler.handle_body(message.get("Body", ""))
        except Exception as exc:  # noqa: BLE001 - keep this message (it ends in the DLQ), keep consuming
            log.exception("handling message %s failed", message.get("MessageId"))
            return [Outcome("retry", f"{type(exc).__name__}: {exc}")]

    def _hold_copies(self, messages: list[dict], results: list[list[Outcome]], token: int, event_ids):
        """Split off the messages that are only copies of events another batch of this consumer is handling
        (every outcome to keep is ``in-progress``, and another batch here holds that event and is not
        itself such a waiting copy). They wait here, up to ``retry_delay_seconds``, until no such batch
        holds it, and are handled again (then they are duplicates and deleted) instead of going back to
        the queue for ``retry_delay_seconds``. The batch's other messages are settled and their events
        released first, so two batches holding copies of each other's events do not wait on each other."""
        held: list[dict] = []
        rest: list[tuple[dict, list[Outcome]]] = []
        waited_for: set[str] = set()
        with self._lock:
            for m, outcomes in zip(messages, results):
                keep = [o for o in outcomes if not o.delete_message]
                if keep and all(o.status == IN_PROGRESS and o.event_id and self._handled_elsewhere(o.event_id, token)
                                for o in keep):
                    held.append(m)
                    waited_for.update(o.event_id for o in keep)
                else:
                    rest.append((m, outcomes))
        if not held:
            return held, rest
        self._settle(rest)
        self._release(token, event_ids - waited_for)
        with self._settled:
            self._waiting.update((eid, token) for eid in waited_for)
            self._settled.notify_all()
            self._settled.wait_for(lambda: not any(self._handled_elsewhere(eid, token) for eid in waited_for),
                                   timeout=self.retry_delay_seconds)
        return held, []

    def _handled_elsewhere(self, event_id: str, token: int) -> bool:
        """Another batch of this consumer holds the event and is not a copy waiting like this one."""
        return any(h != token and (event_id, h) not in self._waiting for h in self._holders.get(event_id, []))

    def _settle(self, handled: list[tuple[dict, list[Outcome]]]) -> None:
        if not handled:
            return
        messages = [m for m, _ in handled]
        delete, back = [], {}
        with self._lock:
            for m, outcomes in handled:
                self.stats.last[m["MessageId"]] = list(outcomes)
                for o in outcomes:
                    self.stats.outcomes[o.status] += 1
                if all(o.delete_message for o in outcomes):
                    delete.append(m)
                else:
                    back[m["MessageId"]] = (m, self._delay(m, outcomes))
            if back:
                self._returning_until = max(self._returning_until,
                                            time.monotonic() + max(d for _, d in back.values()) + 1)
        try:
            for start in range(0, len(delete), 10):
                part = delete[start:start + 10]
                answer = self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=[
                    {"Id": str(k), "ReceiptHandle": m["ReceiptHandle"]} for k, m in enumerate(part)])
                self._count("deleted", len(answer.get("Successful", [])), answer.get("Failed", []))
            items = list(back.values())
            for start in range(0, len(items), 10):
                part = items[start:start + 10]
                answer = self.sqs.change_message_visibility_batch(QueueUrl=self.queue_url, Entries=[
                    {"Id": str(k), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": delay}
                    for k, (m, delay) in enumerate(part)])
                self._count("returned", len(answer.get("Successful", [])), answer.get("Failed", []))
        except (ClientError, BotoCoreError) as exc:
            # The messages come back when their visibility runs out; the journal makes that a duplicate.
            log.warning("settling %d message(s) failed: %s", len(messages), exc)
        finally:
            with self._lock:
                for m in messages:
                    self._inflight.pop(m["MessageId"], None)

    def _delay(self, message: dict, outcomes: list[Outcome]) -> int:
        """When a message to keep comes back: after ``retry_delay_seconds`` for a transient failure; for an
        event another worker holds, after ``retry_delay_seconds`` doubled per delivery, up to the visibility
        timeout (in a wave the copy usually arrives while the original is being handled, and that takes
        seconds: waiting a whole visibility timeout would hold the wave's tail; doubling still leaves a
        slow original, a lifecycle wait, minutes before the copy's deliveries run out)."""
        if not all(o.status == IN_PROGRESS for o in outcomes if not o.delete_message):
            return self.retry_delay_seconds
        count = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1") or 1)
        return int(min(self.visibility_timeout, max(1, self.retry_delay_seconds) * 2 ** max(0, count - 1)))

    def _count(self, what: str, ok: int, failed: list) -> None:
        for f in failed:
            log.warning("settling a message failed: %s %s", f.get("Code"), f.get("Message"))
        with self._lock:
            setattr(self.stats, what, getattr(self.stats, what) + ok)

    def _extend_loop(self) -> None:
        period = self.extend_every_seconds
        last = time.monotonic()
        while not (self._stop.is_set() and self._idle()):
            time.sleep(min(0.2, period))
            if time.monotonic() - last < period:
                continue
            last = time.monotonic()
            with self._lock:
                handles = list(self._inflight.items())
            for start in range(0, len(handles), 10):  # ChangeMessageVisibilityBatch: 10 per call
                part = handles[start:start + 10]
                try:
                    answer = self.sqs.change_message_visibility_batch(QueueUrl=self.queue_url, Entries=[
                        {"Id": str(k), "ReceiptHandle": receipt, "VisibilityTimeout": self.visibility_timeout}
                        for k, (_, receipt) in enumerate(part)])
                except (ClientError, BotoCoreError) as exc:
                    log.warning("extending the visibility of %d message(s) failed: %s", len(part), exc)
                    continue
                with self._lock:
                    self.stats.extended += len(answer.get("Successful", []))
                    for failed in answer.get("Failed", []):
                        mid = part[int(failed["Id"])][0]
                        if mid in self._inflight:  # else it was settled (deleted) meanwhile: nothing to extend
                            log.warning("extending the visibility of %s failed: %s", mid, failed.get("Message"))


@dataclass
class _Outage:
    """One worker's failed receives in a row: how many, and since when (the consumer's clock)."""

    failures: int = 0
    since: float = 0.0


def _event_ids(body) -> list[str]:
    """The event ids a message body is about (none for a body that cannot be parsed: it is dropped)."""
    try:
        return [e.event_id for e in from_message_body(body)]
    except Exception:  # noqa: BLE001 - a body that cannot be parsed is the handler's to drop
        return []
