"""``spotkit.constructs.moved``: the logical id it computes for a construct path is the engine's, so the
``moved`` blocks it emits come from the addresses a deployed state holds."""

from __future__ import annotations

import json

from cdktn import TerraformElement, Testing as CdkTesting
from constructs import Construct

from spotkit.constructs.moved import logical_id, moved_from
from spotkit.stacks.base import SpotkitStack, StackConfig
from spotkit.stacks.training import TrainingConfig, TrainingStack
from tests.support.synth import build_stack


def _elements(stack) -> list:
    return [c for c in stack.node.find_all() if isinstance(c, TerraformElement)]


def test_logical_id_is_the_engines_for_every_element_of_a_stack():
    # GIVEN the training stack (resources, data sources, outputs at depths 1 to 4)
    _, stack = build_stack(TrainingStack, TrainingConfig())
    elements = _elements(stack)
    assert len(elements) > 50
    # THEN each one's logical id computed from its scope and id is the one the engine gave it
    wrong = {stack.get_logical_id(e): logical_id(e.node.scope, e.node.id) for e in elements
             if logical_id(e.node.scope, e.node.id) != stack.get_logical_id(e)}
    assert not wrong


def test_logical_id_follows_the_engine_on_hidden_repeated_and_long_ids():
    from cdktn_aws.sqs import AwsQueue

    # GIVEN queues under a hidden id (Default), one hidden from the readable part (Resource), a repeated
    # id (queue/queue), characters the engine drops, and a path longer than the readable part's 240
    stack = SpotkitStack(CdkTesting.app(), "t", StackConfig(name="t"))
    parents = [Construct(stack, "Default"), Construct(stack, "Resource"), Construct(stack, "queue"),
               Construct(stack, "we.ird id!"), Construct(Construct(stack, "a" * 200), "b" * 100)]
    queues = [AwsQueue(p, "queue", name=f"q{i}") for i, p in enumerate(parents)]
    queues.append(AwsQueue(stack, "x" * 300, name="l"))
    # THEN each logical id is the engine's
    assert [logical_id(q.node.scope, q.node.id) for q in queues] == [stack.get_logical_id(q) for q in queues]


def test_moved_from_emits_a_block_from_the_old_address_to_the_new():
    from cdktn_aws.sqs import AwsQueue

    # GIVEN a queue that was "queue" directly in construct "events", now inside its part "delivery"
    stack = SpotkitStack(CdkTesting.app(), "t", StackConfig(name="t"))
    events = Construct(stack, "events")
    queue = moved_from(AwsQueue(Construct(events, "delivery"), "queue", name="q"), events, "queue")
    doc = json.loads(CdkTesting.synth(stack))
    # THEN the synthesized stack moves the old address to the queue's
    assert doc["moved"] == [{"from": f"aws_sqs_queue.{logical_id(events, 'queue')}",
                             "to": f"aws_sqs_queue.{stack.get_logical_id(queue)}"}]
    assert logical_id(events, "queue").startswith("events_queue_")
    assert list(doc["resource"]["aws_sqs_queue"]) == [stack.get_logical_id(queue)]
