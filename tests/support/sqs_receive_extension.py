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

Reuse: ``install()`` (done by tests/support/moto_server.py at import).
"""

from __future__ import annotations

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


def install() -> None:
    """Patch moto's SQS backend (idempotent)."""
    SQSBackend.is_message_valid_based_on_retention_period = _is_message_valid_based_on_retention_period
    SQSBackend.get_queue_attributes = _get_queue_attributes
