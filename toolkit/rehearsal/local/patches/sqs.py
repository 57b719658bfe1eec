"""SQS: RedrivePolicy comes back as compact JSON; queue operations are atomic (toolkit/rehearsal/local/sqs_queue.py)."""

from __future__ import annotations

import json

from spotkit.rehearsal.local import sqs_queue
from spotkit.rehearsal.local.patches import Patch


def _compact_redrive_policy() -> None:
    from moto.sqs.models import Queue

    if getattr(Queue.attributes.fget, "_spotkit", False):
        return
    original = Queue.attributes

    def attributes(self):
        result = original.fget(self)
        if self.redrive_policy:
            result["RedrivePolicy"] = json.dumps(self.redrive_policy, separators=(",", ":"))
        return result

    attributes._spotkit = True
    Queue.attributes = property(attributes)


_API = "https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_"

PATCHES = (
    Patch("sqs", ("GetQueueAttributes",),
          'returns RedrivePolicy as compact JSON ({"deadLetterTargetArn":"...","maxReceiveCount":5})',
          "answers json.dumps with spaces, and the provider compares the strings, so every re-plan wanted to change "
          "the queue", f"{_API}GetQueueAttributes.html", _compact_redrive_policy),
    Patch("sqs", ("DeleteMessage", "DeleteMessageBatch", "ReceiveMessage", "SendMessage", "ChangeMessageVisibility"),
          "makes each queue operation atomic (a deleted message stays deleted) and hands out a message without "
          "scanning the queue (same answers)",
          "runs them at once on its threaded server, and two concurrent deletes can undo one another (deleted "
          "messages are delivered again: `handle-events --concurrency 4` deletes from one queue at once); and it "
          "scans the whole queue about nine times per message it hands out (about 2 s per receive at 1,100 "
          "messages)", f"{_API}DeleteMessage.html", sqs_queue.install),
)
