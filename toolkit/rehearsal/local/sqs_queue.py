"""moto cost: ``ReceiveMessage`` recomputes every queue attribute for every message it hands out.

moto 5.2's ``SQSBackend.receive_message`` checks each message it returns against the queue's retention
period through ``get_queue_attributes(queue, ["MessageRetentionPeriod"])``, and that builds
``Queue.attributes`` (all of them, including the three approximate counts, each a scan of every
message with two clock reads per message) three times per requested name. At 1,100 messages in the
queue one ReceiveMessage of 10 took about 2 s of moto's CPU, growing with the queue: a wave's drain
time in the emulator grew with the square of its size. AWS does not scan the queue to hand out a
message.

This extension changes nothing that is answered, only how often moto computes it:

- the retention check reads the queue's ``message_retention_period`` (the very value
  ``get_queue_attributes`` returns for ``MessageRetentionPeriod``);
- ``GetQueueAttributes`` with named attributes builds ``Queue.attributes`` once per call (not twice per
  name plus once) and picks the names from it, with moto's own validation and rules (a name absent or
  None is left out, ``All`` answers everything).

It also makes each queue operation atomic, as in SQS: moto's threaded server runs ``ReceiveMessage``,
``DeleteMessage`` (which rebuilds the queue's message list), ``SendMessage`` and
``ChangeMessageVisibility`` concurrently without a lock, and ``DeleteMessage`` replaces the list it
built from the one it read: two deletes at once undo one another (measured: 8 threads deleting 400
received messages in batches of 10 left 42 of them in the queue, to be delivered again), a receive
or a visibility change racing a delete works on a list that is being replaced. Here they run one at a time (moto runs one
at a time anyway under the GIL); a long poll waits outside the lock and looks again when a message
arrives or once a second, as moto's own receive does.

Reuse: ``install()`` (done by ``spotkit local start``'s emulator process, see toolkit/rehearsal/local/server.py, and by
tests/support/moto_server.py at import).
"""

from __future__ import annotations

import functools
import threading
from typing import Any

from moto.core.utils import unix_time
from moto.sqs.exceptions import InvalidAttributeName
from moto.sqs.models import SQSBackend


def _is_message_valid_based_on_retention_period(self, queue_name: str, message) -> bool:
    retention_period = self.get_queue(queue_name).message_retention_period
    return retention_period + message.sent_timestamp / 1000 > unix_time()


def _get_queue_attributes(self, queue_name: str, attribute_names: list[str]) -> dict[str, Any]:
    queue = self.get_queue(queue_name)
    if not attribute_names:
        return {}
    valid_names = ["All"] + queue.BASE_ATTRIBUTES + queue.FIFO_ATTRIBUTES + queue.KMS_ATTRIBUTES
    invalid_name = next((name for name in attribute_names if name not in valid_names), None)
    if invalid_name or invalid_name == "":
        raise InvalidAttributeName(invalid_name)
    everything = queue.attributes  # once per call
    if "All" in attribute_names:
        return everything
    return {name: everything[name] for name in attribute_names
            if name in everything and everything[name] is not None}


_LOCK = threading.RLock()  # one queue operation at a time (moto's in-memory queues are not thread-safe)
_ORIGINAL: dict[str, Any] = {}


def _atomic(name: str):
    original = _ORIGINAL.setdefault(name, getattr(SQSBackend, name))

    @functools.wraps(original)
    def run(self, *args, **kwargs):
        with _LOCK:
            return original(self, *args, **kwargs)

    run._spotkit_atomic = True  # type: ignore[attr-defined]
    return run


def _receive_message(self, queue_name: str, count: int, wait_seconds_timeout: int, visibility_timeout: int,
                     message_attribute_names: list[str] | None = None):
    original = _ORIGINAL["receive_message"]
    deadline = unix_time() + (wait_seconds_timeout or 0)
    while True:
        with _LOCK:  # pick and mark the messages atomically (no wait inside: ``wait_seconds_timeout=0``)
            result = original(self, queue_name, count, 0, visibility_timeout, message_attribute_names)
        if result or not wait_seconds_timeout or unix_time() >= deadline:
            return result
        self.get_queue(queue_name).wait_for_messages(1)  # outside the lock; woken when a message is added


def stock() -> dict[str, Any]:
    """moto's own methods this extension replaces (name -> function), e.g. to measure the difference."""
    return dict(_ORIGINAL)


def install() -> None:
    """Patch moto's SQS backend (idempotent)."""
    for name in ("is_message_valid_based_on_retention_period", "get_queue_attributes"):
        _ORIGINAL.setdefault(name, getattr(SQSBackend, name))
    SQSBackend.is_message_valid_based_on_retention_period = _is_message_valid_based_on_retention_period
    SQSBackend.get_queue_attributes = _get_queue_attributes
    for name in ("send_message", "delete_message", "change_message_visibility", "purge_queue"):
        if not getattr(getattr(SQSBackend, name), "_spotkit_atomic", False):
            setattr(SQSBackend, name, _atomic(name))
    _ORIGINAL.setdefault("receive_message", SQSBackend.receive_message)
    SQSBackend.receive_message = _receive_message
