"""The emulator's SQS patch (toolkit/rehearsal/local/sqs_queue.py) against the moto server over
HTTP: the answers are SQS's (attributes by name, ``All``, a bad name refused, long polling), and
concurrent receivers and deleters work as on one queue: no message handed out twice, no delete undone."""

from __future__ import annotations

import threading

import pytest
from botocore.exceptions import ClientError

from tests.support.sqs_race import assert_concurrent_deletes_all_stick


def _queue(aws, **attributes):
    sqs = aws.client("sqs")
    url = sqs.create_queue(QueueName="ext-q", Attributes={k: str(v) for k, v in attributes.items()})["QueueUrl"]
    return sqs, url


@pytest.fixture()
def attribute_builds(monkeypatch):
    """How many times moto builds a queue's ``attributes`` (every one, with the approximate counts that
    scan every message): the cost the extension is for. Counted in this process (the test server is a
    thread of it), not timed."""
    from moto.sqs.models import Queue

    built = []
    stock = Queue.attributes

    def counted(queue):
        built.append(queue.name)
        return stock.fget(queue)

    monkeypatch.setattr(Queue, "attributes", property(counted))
    return built


def test_a_receive_does_not_rebuild_the_queue_attributes_per_message(aws, attribute_builds):
    # GIVEN a queue of 200 messages
    sqs, url = _queue(aws, VisibilityTimeout=300)
    for start in range(0, 200, 10):
        sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(k), "MessageBody": f"m{start + k}"} for k in range(10)])
    # WHEN one receive hands out 10 of them
    attribute_builds.clear()
    assert len(sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]) == 10
    # THEN the queue's attributes were not built for them (moto's own retention check builds them per message)
    assert attribute_builds == []
    # AND asking for 5 attributes by name builds them once, not once per name
    sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "QueueArn",
                                                           "VisibilityTimeout", "DelaySeconds", "Policy"])
    assert attribute_builds == ["ext-q"]


def test_it_is_in_the_registry():
    from spotkit.rehearsal.local import sqs_queue
    from spotkit.rehearsal.local.registry import PATCHES

    assert [p.what for p in PATCHES if p.apply is sqs_queue.install] == [
        "sqs DeleteMessage / DeleteMessageBatch / ReceiveMessage / SendMessage / ChangeMessageVisibility"]


def test_attributes_by_name_are_those_of_all(aws):
    # GIVEN a queue with 3 messages, one of them received (in flight)
    sqs, url = _queue(aws, MessageRetentionPeriod=600, VisibilityTimeout=45)
    for i in range(3):
        sqs.send_message(QueueUrl=url, MessageBody=f"m{i}")
    assert len(sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1)["Messages"]) == 1
    # WHEN attributes are asked by name and as All
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible", "MessageRetentionPeriod",
             "VisibilityTimeout", "QueueArn"]
    some = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    every = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    # THEN the named ones are exactly All's values for those names
    assert some == {n: every[n] for n in names}
    assert (some["ApproximateNumberOfMessages"], some["ApproximateNumberOfMessagesNotVisible"]) == ("2", "1")
    assert some["MessageRetentionPeriod"] == "600"
    # AND an attribute the queue does not have (no redrive policy) is left out, a bad name refused
    assert sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["RedrivePolicy"]).get("Attributes", {}) == {}
    with pytest.raises(ClientError) as err:
        sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["NoSuchAttribute"])
    assert err.value.response["Error"]["Code"] in ("InvalidAttributeName", "InvalidParameterValue")


def test_a_long_poll_returns_a_message_sent_while_it_waits(aws, monkeypatch):
    # GIVEN an empty queue and a receiver long-polling it for up to 20 s, seen waiting on the queue
    from moto.sqs.models import Queue

    waiting, stock_wait = threading.Event(), Queue.wait_for_messages

    def wait_for_messages(queue, timeout):
        waiting.set()
        return stock_wait(queue, timeout)

    monkeypatch.setattr(Queue, "wait_for_messages", wait_for_messages)
    sqs, url = _queue(aws)
    got = []
    receiver = threading.Thread(target=lambda: got.extend(
        aws.client("sqs").receive_message(QueueUrl=url, WaitTimeSeconds=20).get("Messages", [])))
    receiver.start()
    assert waiting.wait(timeout=30), "the receive never waited for a message"
    # WHEN a message is sent meanwhile
    sqs.send_message(QueueUrl=url, MessageBody="late")
    receiver.join(timeout=60)
    # THEN the waiting receive returned it (not an empty answer after the wait)
    assert not receiver.is_alive()
    assert [m["Body"] for m in got] == ["late"]


def test_an_empty_long_poll_returns_nothing(aws):
    sqs, url = _queue(aws)
    assert sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages", []) == []


def test_concurrent_receivers_never_get_the_same_message(aws):
    # GIVEN 200 messages and 8 receivers taking 10 at a time, all at once
    sqs, url = _queue(aws, VisibilityTimeout=300)
    for start in range(0, 200, 10):
        sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(k), "MessageBody": f"m{start + k}"} for k in range(10)])
    received: list[str] = []
    lock, barrier = threading.Lock(), threading.Barrier(8)

    def receive():
        client = aws.client("sqs")
        barrier.wait()
        while True:
            got = client.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
            if not got:
                return
            with lock:
                received.extend(m["MessageId"] for m in got)

    threads = [threading.Thread(target=receive) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    # THEN every message was handed out exactly once
    assert len(received) == 200 and len(set(received)) == 200


def test_concurrent_deletes_all_stick(aws):
    sqs, url = _queue(aws, VisibilityTimeout=300)
    assert_concurrent_deletes_all_stick(lambda: aws.client("sqs"), url)
