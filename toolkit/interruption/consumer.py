"""The queue consumer behind ``spotkit handle-events --queue-url`` (NTH's queue mode).

- Up to ``concurrency`` messages are handled at once (a thread each); it never receives more than it
  has free workers for, so nothing waits invisible on the queue.
- While a message is being handled its visibility timeout is extended every third of the timeout, so a
  slow drain (a lifecycle action waiting for ECS tasks) is not redelivered to another consumer.
- Each message is deleted when every event in it ended in a final outcome (acted, duplicate, ignored,
  dropped); otherwise it is made visible again after ``retry_delay_seconds`` (a transient failure, or an
  action that failed: the event is journaled ``failed``) or ``visibility_timeout`` (another worker holds
  the event): after the queue's maxReceiveCount it moves to the dead-letter queue.
- Receiving that fails (an endpoint gone, a network down) is retried ``max_receive_failures`` times in a
  row with a growing pause, then ``run`` raises ``ConsumerError``; an error retrying cannot fix (no such
  queue, access denied, bad credentials) raises it at once. It never retries forever.
- ``stop()`` (SIGTERM/SIGINT when ``install_signal_handlers()`` was called) is a clean shutdown: no more
  receives; handling in progress finishes (each is bounded by its event's deadline); then ``run`` returns.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Optional

from botocore.exceptions import BotoCoreError, ClientError

from toolkit.interruption.handler import IN_PROGRESS, Handler, Outcome

log = logging.getLogger("spotkit.interruption")

DEFAULT_MAX_RECEIVE_FAILURES = 4
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


@dataclass
class ConsumerStats:
    received: int = 0
    deleted: int = 0
    returned: int = 0
    extended: int = 0
    outcomes: Counter = field(default_factory=Counter)

    def to_dict(self) -> dict:
        return {"received": self.received, "deleted": self.deleted, "returned": self.returned,
                "visibility_extensions": self.extended, "outcomes": dict(self.outcomes)}


class QueueConsumer:
    def __init__(self, sqs, queue_url: str, handler: Handler, *, concurrency: int = 8, visibility_timeout: int = 60,
                 wait_seconds: int = 10, retry_delay_seconds: int = 10, extend_every_seconds: Optional[float] = None,
                 max_receive_failures: int = DEFAULT_MAX_RECEIVE_FAILURES, receive_backoff_seconds: float = 2.0):
        if concurrency < 1:
            raise ValueError("concurrency must be 1 or more")
        if max_receive_failures < 1:
            raise ValueError("max_receive_failures must be 1 or more")
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
        self.max_receive_failures = max_receive_failures
        self.receive_backoff_seconds = receive_backoff_seconds
        self.stats = ConsumerStats()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._slots = threading.Semaphore(concurrency)
        self._inflight: dict[str, str] = {}  # message id -> receipt handle

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
        messages in flight are settled) when receiving keeps failing."""
        failures = 0
        error: Optional[ConsumerError] = None
        extender = threading.Thread(target=self._extend_loop, name="spotkit-visibility", daemon=True)
        extender.start()
        with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="spotkit-handler") as pool:
            while not self._stop.is_set():
                if max_messages is not None and self.stats.received >= max_messages:
                    break
                free = self._acquire_free()
                if free == 0:
                    continue
                want = min(10, free) if max_messages is None else min(10, free, max_messages - self.stats.received)
                try:
                    messages = self.sqs.receive_message(
                        QueueUrl=self.queue_url, MaxNumberOfMessages=want, VisibilityTimeout=self.visibility_timeout,
                        WaitTimeSeconds=1 if stop_when_idle else self.wait_seconds,
                        AttributeNames=["ApproximateReceiveCount"]).get("Messages", [])
                except (ClientError, BotoCoreError) as exc:
                    self._release(free)
                    failures += 1
                    code = exc.response.get("Error", {}).get("Code", "") if isinstance(exc, ClientError) else ""
                    if code in FATAL_RECEIVE_CODES:
                        error = ConsumerError(f"cannot receive from {self.queue_url}: {exc}",
                                              "check the queue URL (the stack's interruption_queue_url output), "
                                              "the region and the credentials")
                        break
                    if failures >= self.max_receive_failures:
                        error = ConsumerError(
                            f"receiving from {self.queue_url} failed {failures} times in a row; last error: {exc}",
                            "check --endpoint-url / --region and the network, then run again (messages not "
                            "handled stay on the queue)")
                        break
                    pause = min(30.0, self.receive_backoff_seconds * 2 ** (failures - 1))
                    log.warning("receiving from %s failed (%d of %d, retrying in %.0f s): %s", self.queue_url,
                                failures, self.max_receive_failures, pause, exc)
                    self._stop.wait(pause)
                    continue
                failures = 0
                self._release(free - len(messages))
                with self._lock:
                    self.stats.received += len(messages)
                    for m in messages:
                        self._inflight[m["MessageId"]] = m["ReceiptHandle"]
                for m in messages:
                    pool.submit(self._handle, m)
                if not messages and stop_when_idle and self._idle():
                    break
        self._stop.set()
        extender.join(timeout=5)
        if error is not None:
            raise error
        return self.stats

    def _acquire_free(self) -> int:
        """Wait (briefly) for a free worker, then take every free one."""
        if not self._slots.acquire(timeout=0.2):
            return 0
        n = 1
        while n < self.concurrency and self._slots.acquire(blocking=False):
            n += 1
        return n

    def _release(self, n: int) -> None:
        for _ in range(max(0, n)):
            self._slots.release()

    def _idle(self) -> bool:
        with self._lock:
            return not self._inflight

    def _handle(self, message: dict) -> None:
        mid, receipt = message["MessageId"], message["ReceiptHandle"]
        try:
            outcomes = self.handler.handle_body(message.get("Body", ""))
        except Exception as exc:  # a bug: keep the message (it ends in the DLQ), keep consuming
            log.exception("handling message %s failed", mid)
            outcomes = [Outcome("retry", f"{type(exc).__name__}: {exc}")]
        try:
            with self._lock:
                self._inflight.pop(mid, None)
                for o in outcomes:
                    self.stats.outcomes[o.status] += 1
            if all(o.delete_message for o in outcomes):
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=receipt)
                with self._lock:
                    self.stats.deleted += 1
            else:
                delay = self.visibility_timeout if all(o.status == IN_PROGRESS for o in outcomes if not o.delete_message) \
                    else self.retry_delay_seconds
                self.sqs.change_message_visibility(QueueUrl=self.queue_url, ReceiptHandle=receipt, VisibilityTimeout=delay)
                with self._lock:
                    self.stats.returned += 1
        except (ClientError, BotoCoreError) as exc:
            # The message comes back when its visibility runs out; the journal makes that a duplicate.
            log.warning("settling message %s failed: %s", mid, exc)
        finally:
            self._slots.release()

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
            for mid, receipt in handles:
                try:
                    self.sqs.change_message_visibility(QueueUrl=self.queue_url, ReceiptHandle=receipt,
                                                       VisibilityTimeout=self.visibility_timeout)
                    with self._lock:
                        self.stats.extended += 1
                except (ClientError, BotoCoreError) as exc:
                    with self._lock:
                        still_inflight = mid in self._inflight
                    if still_inflight:  # else it was settled (deleted) meanwhile: nothing to extend
                        log.warning("extending the visibility of %s failed: %s", mid, exc)
