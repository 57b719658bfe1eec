"""Interruption handling: detect -> decide -> act.

- ``events``: every warning AWS sends (EventBridge, SQS bodies, Auto Scaling notifications; the agent
  forwards what it reads from IMDS, parsed by ``spotkit.runtime.agent.notices``) normalized into one ``InterruptionEvent`` with a deterministic id.
- ``store``: the journal that de-duplicates events (first claim wins) and records every action;
  DynamoDB in a stack, a JSON-lines file locally.
- ``actions``: the idempotent actions (deregister targets, ECS drain, SSM checkpoint, complete the
  lifecycle action, start a replacement), each for a batch of instances (one instance is a batch of
  one), each with ``dry_run`` at the lowest call. Public API reused by the recovery runbooks:
  ``drain(clients, [DrainRequest(instance_id)], dry_run=..., discovery=Discovery())``.
- ``scope``: the one decision of what the handler may touch (the event's account and region, spotkit's
  tags on the instance or group, the groups asked for).
- ``handler``: decides which actions an event gets, in which order, and records them; ``batch``: the one
  path every event takes, a receive of up to 10 messages at a time (one message is a batch of one).
- ``consumer``: the SQS loop (``spotkit handle-events --queue-url``); ``lambda_entry``: the Lambda.

This package imports only boto3/botocore and ``spotkit.runtime.notice`` (standard library) so the stack can
package it, with ``toolkit/runtime/notice.py``, as the Lambda's code (see ``spotkit.constructs.interruption_events.build_lambda_source``).
"""
