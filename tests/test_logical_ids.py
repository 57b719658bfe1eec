"""``spotkit.constructs.addresses``: the logical id it computes for a construct path is the engine's, so a
resource moved into a sub-construct keeps the address a deployed state holds."""

from __future__ import annotations

import json

from cdktn import TerraformElement, Testing as CdkTesting
from constructs import Construct

from spotkit.constructs.addresses import logical_id, keep_address
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


def test_keep_address_gives_a_moved_resource_its_old_address():
    from cdktn_aws.sqs import AwsQueue

    # GIVEN a queue that was "queue" directly in construct "events", now inside its part "delivery", and a
    # queue referring to it
    stack = SpotkitStack(CdkTesting.app(), "t", StackConfig(name="t"))
    events = Construct(stack, "events")
    queue = keep_address(AwsQueue(Construct(events, "delivery"), "queue", name="q"), events, "queue")
    AwsQueue(stack, "other", name="o", redrive_policy=queue.arn)
    doc = json.loads(CdkTesting.synth(stack))
    # THEN the synthesized stack declares it at its old address, references follow, and nothing is moved
    old = logical_id(events, "queue")
    assert old.startswith("events_queue_") and queue.friendly_unique_id == old
    assert sorted(doc["resource"]["aws_sqs_queue"]) == sorted([old, "other"])
    assert doc["resource"]["aws_sqs_queue"]["other"]["redrive_policy"] == f"${{aws_sqs_queue.{old}.arn}}"
    assert "moved" not in doc
