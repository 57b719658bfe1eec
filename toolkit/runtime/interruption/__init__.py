"""Interruption handling: detect -> decide -> act.

- ``events``: every warning AWS sends (EventBridge, SQS bodies, Auto Scaling notifications, IMDS)
  normalized into one ``InterruptionEvent`` with a deterministic id.
- ``store``: the journal that de-duplicates events (first claim wins) and records every action;
  DynamoDB in a stack, a JSON-lines file locally.
- ``actions``: the idempotent actions (deregister targets, ECS drain, SSM checkpoint, complete the
  lifecycle action, start a replacement), each with ``dry_run`` at the lowest call. Public API reused
  by the recovery runbooks: ``drain_instance(clients, instance_id, dry_run=...)``.
- ``scope``: the one decision of what the handler may touch (the event's account and region, spotkit's
  tags on the instance or group, the groups asked for), for the single-event and the batch path.
- ``handler``: decides which actions an event gets, in which order, and records them (``batch``: the
  same for a receive of up to 10 messages; one message is a batch of one).
- ``consumer``: the SQS loop (``spotkit handle-events --queue-url``); ``lambda_entry``: the Lambda.

This package imports only boto3/botocore and ``spotkit.runtime.notice`` (standard library) so the stack can
package it, with ``toolkit/runtime/notice.py``, as the Lambda's code (see ``spotkit.constructs.interruption_events.build_lambda_source``).
"""
