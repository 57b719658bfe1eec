"""moto gap: ``AttachVolume`` checks nothing, where EC2 refuses three things the data-volume code relies on.

moto 5.2 attaches any volume to any instance: one already attached elsewhere, one in another AZ, one at a
device the instance already uses. EC2 refuses each (``VolumeInUse``, ``InvalidVolume.ZoneMismatch``,
``InvalidParameterValue`` "Attachment point ... is already in use"). The boot part and ``recover volumes``
both attach volumes and must cope when the other got there first, so the emulator refuses them as EC2
does; nothing else of moto's attach changes.

Reuse: ``install()`` (done by tests/support/moto_server.py at import).
"""

from __future__ import annotations

import threading

from moto.ec2.exceptions import EC2ClientError
from moto.ec2.models.elastic_block_store import EBSBackend

_original = EBSBackend.attach_volume
_lock = threading.Lock()  # EC2 decides each attach atomically; moto's threaded server would not


def _attach_volume(self, volume_id: str, instance_id: str, device_path: str, delete_on_termination: bool = False):
    with _lock:
        return _checked_attach(self, volume_id, instance_id, device_path, delete_on_termination)


def _checked_attach(self, volume_id: str, instance_id: str, device_path: str, delete_on_termination: bool):
    volume = self.get_volume(volume_id)
    instance = self.get_instance(instance_id)
    if volume is not None and instance is not None:
        if volume.attachment is not None:
            raise EC2ClientError("VolumeInUse", f"{volume_id} is already attached to an instance")
        if getattr(volume.zone, "name", volume.zone) != instance.placement.zone:
            raise EC2ClientError("InvalidVolume.ZoneMismatch", f"The volume '{volume_id}' is not in the same "
                                 f"availability zone as instance '{instance_id}'")
        if device_path in instance.block_device_mapping:
            raise EC2ClientError("InvalidParameterValue", f"Invalid value '{device_path}' for unixDevice. "
                                 f"Attachment point {device_path} is already in use")
    return _original(self, volume_id, instance_id, device_path, delete_on_termination)


def install() -> None:
    """Patch moto's EBS backend (idempotent)."""
    EBSBackend.attach_volume = _attach_volume
