"""Outages are ridden out (issue 25): each worker of the queue consumer retries a failing receive with its own
growing pause within a time budget, then carries on where it was. A fake SQS that refuses for a while on an
injected clock: no real outage, no wall-clock luck."""

from __future__ import annotations

import threading

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from spotkit.runtime.interruption.consumer import ConsumerError, QueueConsumer
from spotkit.runtime.interruption.handler import Outcome

URL = "https://sqs.us-east-1.amazonaws.com/123456789012/interruptions"


class Clock:
    """Shared fake time; ``wait`` advances it (what a worker's pause would take) instead of sleeping."""

    def __init__(self):
        self.now = 1000.0
        self._lock = threading.Lock()
        self.pauses: list[float] = []

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def wait(self, seconds: float) -> bool:
        with self._lock:
            self.pauses.append(seconds)
            self.now += seconds
        return False


class FlakySqs:
    """Refuses every receive while ``clock`` is before ``down_until`` (an outage of the network), then
    delivers ``messages`` once each and is empty."""

    def __init__(self, clock: Clock, down_until: float, messages: int = 5):
        self.clock = clock
        self.down_until = down_until
        self._lock = threading.Lock()
        self.queue = [{"MessageId": f"m{n}", "ReceiptHandle": f"r{n}", "Body": f"body-{n}",
                       "Attributes": {"ApproximateReceiveCount": "1"}} for n in range(messages)]
        self.deleted: list[str] = []
        self.refused = 0

    def get_queue_attributes(self, **kwargs):
        with self._lock:
            left = len(self.queue)
        return {"Attributes": {"ApproximateNumberOfMessages": str(left), "ApproximateNumberOfMessagesNotVisible": "0",
                               "ApproximateNumberOfMessagesDelayed": "0", "QueueArn": "arn"}}

    def receive_message(self, **kwargs):
        if self.clock() < self.down_until:
            with self._lock:
                self.refused += 1
            raise EndpointConnectionError(endpoint_url=URL)
        with self._lock:
            taken, self.queue = self.queue[:kwargs["MaxNumberOfMessages"]], self.queue[kwargs["MaxNumberOfMessages"]:]
        return {"Messages": taken}

    def delete_message_batch(self, QueueUrl, Entries):
        with self._lock:
            self.deleted += [e["ReceiptHandle"] for e in Entries]
        return {"Successful": [{"Id": e["Id"]} for e in Entries]}

    def change_message_visibility_batch(self, QueueUrl, Entries):
        return {"Successful": [{"Id": e["Id"]} for e in Entries]}


class RecordingHandler:
    def __init__(self):
        self.bodies: list[str] = []
        self._lock = threading.Lock()

    def handle_batch(self, bodies):
        with self._lock:
            self.bodies += bodies
        return [[Outcome("acted")] for _ in bodies]

    def handle_body(self, body):
        return self.handle_batch([body])[0]


def _consumer(sqs, clock, handler, **kwargs) -> QueueConsumer:
    return QueueConsumer(sqs, URL, handler, concurrency=kwargs.pop("concurrency", 4), batch_size=kwargs.pop("batch_size", 2),
                         visibility_timeout=30, wait_seconds=1, clock=clock, wait=clock.wait, **kwargs)


def test_a_five_second_outage_is_ridden_out_and_the_consumer_resumes():
    # GIVEN four workers and a queue whose endpoint refuses for 5 seconds; with pauses of 0.25, 0.5, 1, 2 s...
    # any four refusals add up to less than 5 s, so there are more than four (the old shared 4-strike counter
    # ended the run at the fourth)
    clock = Clock()
    sqs = FlakySqs(clock, down_until=clock.now + 5, messages=5)
    handler = RecordingHandler()
    consumer = _consumer(sqs, clock, handler, receive_backoff_seconds=0.25)
    # WHEN it runs until the queue is empty
    stats = consumer.run(stop_when_idle=True)
    # THEN it retried through the outage, then received and settled every message once
    assert sqs.refused > 4
    assert stats.receive_failures == sqs.refused
    assert sorted(handler.bodies) == [f"body-{n}" for n in range(5)]
    assert sorted(sqs.deleted) == [f"r{n}" for n in range(5)]
    assert stats.problems() == []
    # AND each worker's pauses grew (0.25, 0.5, 1, ...) rather than hammering the endpoint
    assert max(clock.pauses) >= 2 * min(clock.pauses)


def test_an_outage_longer_than_the_budget_ends_the_run_with_a_clear_error():
    # GIVEN an endpoint that never comes back, and a budget of 2 minutes
    clock = Clock()
    sqs = FlakySqs(clock, down_until=float("inf"))
    consumer = _consumer(sqs, clock, RecordingHandler(), concurrency=2, outage_budget_seconds=120)
    # WHEN it runs
    with pytest.raises(ConsumerError) as err:
        consumer.run(stop_when_idle=True)
    # THEN it gave up only once a worker's outage reached the budget, and says how long and what to do
    assert str(err.value).startswith(f"receiving from {URL} failed for 120 s (")
    assert "the outage budget is 120 s); last error: Could not connect to the endpoint URL" in str(err.value)
    assert "--outage-budget-minutes" in err.value.hint
    # pauses are capped at 30 s and never run past the budget
    assert max(clock.pauses) <= 30


def test_an_error_retrying_cannot_fix_ends_the_run_at_once():
    # GIVEN a queue the credentials may not read (found on a receive, after the start-up check passed)
    clock = Clock()

    class Denied(FlakySqs):
        def receive_message(self, **kwargs):
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "ReceiveMessage")

    consumer = _consumer(Denied(clock, down_until=0), clock, RecordingHandler(), concurrency=1)
    with pytest.raises(ConsumerError) as err:
        consumer.run(stop_when_idle=True)
    assert str(err.value).startswith(f"cannot receive from {URL}: ")
    assert clock.pauses == []  # no retry at all


def test_a_batch_that_fails_as_a_whole_is_settled_message_by_message():
    # GIVEN a handler with a bug that one message (body-2) triggers, failing any batch that holds it
    clock = Clock()
    sqs = FlakySqs(clock, down_until=0, messages=5)

    class Buggy(RecordingHandler):
        def handle_batch(self, bodies):
            if "body-2" in bodies:
                raise RuntimeError("a bug body-2 triggers")
            return super().handle_batch(bodies)

    handler = Buggy()
    consumer = _consumer(sqs, clock, handler, concurrency=1, batch_size=5, retry_delay_seconds=1)
    # WHEN one receive of five messages is handled (max_messages: the bad one would come back forever)
    stats = consumer.run(max_messages=5)
    # THEN the four others are handled and deleted; only body-2 is kept (it ends in the dead-letter queue)
    assert sorted(handler.bodies) == ["body-0", "body-1", "body-3", "body-4"]
    assert sorted(sqs.deleted) == ["r0", "r1", "r3", "r4"]
    assert [(p["message_id"], p["outcomes"][0]["status"]) for p in stats.problems()] == [("m2", "retry")]
    assert "RuntimeError: a bug body-2 triggers" in stats.problems()[0]["outcomes"][0]["reason"]
