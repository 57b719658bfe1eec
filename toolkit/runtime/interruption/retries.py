"""How spotkit's AWS clients retry: one home for every botocore retry setting.

The settings are plain dicts (standard library only, so this module ships in the Lambda with the rest of
``toolkit/runtime/interruption`` and imports nothing until a client is built); ``botocore_config(name)`` turns one
into a ``botocore.config.Config``.

- ``operator``: the CLI's clients (``spotkit.aws``). Standard mode, 8 attempts: backs off on throttling
  (RequestLimitExceeded, Throttling...) in a runbook that lists a large group; 10 s to connect, 60 s to read.
- ``loopback``: a client of the local emulator (``spotkit local``), never throttled: a refused connection
  means it is not running, so 3 attempts and 5 s to connect say so at once instead of backing off 8 times.
- ``handler``: the interruption handler (the Lambda and ``spotkit handle-events``). Adaptive mode, 8
  attempts: in a wave ELB, ECS and SSM throttle; the client backs off and rate-limits itself.
- ``fail_fast``: ``spotkit handle-events``' first calls (the journal check, the queue): 3 attempts, 5 s to
  connect, so a wrong endpoint or table is reported within seconds, not minutes.
- ``probe``: asking whether an emulator answers (``spotkit.rehearsal.local``): 2 attempts; the caller gives the timeouts.
"""

from __future__ import annotations

from typing import Any

SETTINGS: dict = {
    "operator": {"retries": {"max_attempts": 8, "mode": "standard"}, "connect_timeout": 10, "read_timeout": 60},
    "loopback": {"retries": {"max_attempts": 3, "mode": "standard"}, "connect_timeout": 5, "read_timeout": 60},
    "handler": {"retries": {"max_attempts": 8, "mode": "adaptive"}},
    "fail_fast": {"retries": {"max_attempts": 3, "mode": "standard"}, "connect_timeout": 5},
    "probe": {"retries": {"max_attempts": 2}},
}


def botocore_config(name: str, **more: Any):
    """The ``botocore.config.Config`` of ``SETTINGS[name]``, with ``more`` (``max_pool_connections``,
    timeouts) over it. Imports botocore: call it when a client is built."""
    from botocore.config import Config

    settings = {key: dict(value) if isinstance(value, dict) else value for key, value in SETTINGS[name].items()}
    return Config(**{**settings, **more})
