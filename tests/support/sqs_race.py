"""A race moto 5.2 loses: concurrent DeleteMessageBatch calls on one queue undo one another (the deleted
messages come back). Checked against the test harness and against the emulator ``spotkit local start`` runs."""

from __future__ import annotations

import threading
from typing import Callable


def assert_concurrent_deletes_all_stick(make_sqs: Callable[[], object], url: str) -> None:
    """GIVEN 400 received messages, WHEN 8 threads delete them in batches of 10 at once, THEN none is left."""
    sqs = make_sqs()
    for start in range(0, 400, 10):
        sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(k), "MessageBody": "m"} for k in range(10)])
    received = []
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if not got:
            break
        received += got
    assert len(received) == 400
    parts = [received[i:i + 10] for i in range(0, 400, 10)]
    barrier = threading.Barrier(8)

    def delete(k):
        client = make_sqs()
        barrier.wait()
        for part in parts[k::8]:
            answer = client.delete_message_batch(QueueUrl=url, Entries=[
                {"Id": str(j), "ReceiptHandle": m["ReceiptHandle"]} for j, m in enumerate(part)])
            assert not answer.get("Failed")

    # WHEN 8 threads delete them in batches of 10 at once
    threads = [threading.Thread(target=delete, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    # THEN none is left, visible or in flight
    a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages",
                                                               "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    assert a == {"ApproximateNumberOfMessages": "0", "ApproximateNumberOfMessagesNotVisible": "0"}
