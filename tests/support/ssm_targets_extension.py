"""moto bug: ``SendCommand`` with ``InstanceIds`` and no ``Targets`` is sent to every instance.

moto 5.2's ``Command`` adds the instances matched by its ``Targets`` filters to ``InstanceIds``; with no
targets the filter set is empty, which matches every instance of the region, so a command sent to one
instance is listed for all of them (``ListCommands(InstanceId=...)``). In AWS, a command without
targets runs on the instances named, only. This extension makes an empty target list match nothing, so
tests can check which instance was asked to checkpoint.

Reuse: ``install()`` (done by tests/support/moto_server.py at import).
"""

from __future__ import annotations

from moto.ssm.models import Command

_original = Command._get_instance_ids_from_targets


def _instance_ids_from_targets(self) -> list[str]:
    if not self.targets:
        return []
    return _original(self)


def install() -> None:
    """Patch moto's SSM Command (idempotent)."""
    Command._get_instance_ids_from_targets = _instance_ids_from_targets
