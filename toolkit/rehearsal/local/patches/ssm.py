"""SSM: ``SendCommand`` with ``InstanceIds`` and no ``Targets`` goes to the instances named, only.

moto 5.2's ``Command`` adds the instances matched by its ``Targets`` filters to ``InstanceIds``; with no
targets the filter set is empty, which matches every instance of the region, so a command sent to one
instance is listed for all of them (``ListCommands(InstanceId=...)``). In AWS, a command without
targets runs on the instances named, only. Here an empty target list matches nothing.
"""

from __future__ import annotations

from moto.ssm.models import Command

from spotkit.rehearsal.local.patches import Patch, sets

_original = Command._get_instance_ids_from_targets


def _instance_ids_from_targets(self) -> list[str]:
    if not self.targets:
        return []
    return _original(self)


PATCHES = (
    Patch("ssm", ("SendCommand",),
          "without Targets, sends the command to the InstanceIds given only",
          "matches every instance of the region when Targets is empty, so ListCommands(InstanceId) listed a "
          "command for every instance and no one could tell which instance was asked to checkpoint",
          "https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_SendCommand.html",
          sets("moto.ssm.models", "Command", _get_instance_ids_from_targets=_instance_ids_from_targets)),
)
