"""The drill's AWS side: at every reclaim, the instance's retained data volume outlives it and the
recovery runbook attaches it to the replacement, as on AWS, against the local emulator.

GIVEN an instance of the drill's group with a data volume tagged like the compute group tags them
(``spotkit:group``, ``spotkit:device``, ``spotkit:retain=true``), each ``reclaim(index)``:
terminates the instance (the volume survives: it was attached with DeleteOnTermination false),
launches a replacement in the same AZ, runs ``recover volumes`` and reports where the volume is now.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from spotkit.runbooks.base import RunContext
from spotkit.runbooks.volumes import recover_volumes
from spotkit.runtime.notice import TAG_DEVICE, TAG_GROUP, TAG_MANAGED, TAG_RETAIN

GROUP = "spotkit-drill"
DEVICE = "/dev/sdf"


@dataclass
class DrillAwsTarget:
    ec2: object
    journal_dir: Path
    group: str = GROUP
    device: str = DEVICE
    instance_id: str | None = None
    volume_id: str | None = None
    az: str | None = None

    def _image(self) -> str:
        images = self.ec2.describe_images(Owners=["amazon"])["Images"]
        if not images:
            raise RuntimeError("the emulator lists no Amazon images to launch from")
        return images[0]["ImageId"]

    def _launch(self) -> str:
        placement = {"AvailabilityZone": self.az} if self.az else {}
        out = self.ec2.run_instances(
            ImageId=self._image(), InstanceType="m6i.large", MinCount=1, MaxCount=1, Placement=placement,
            TagSpecifications=[{"ResourceType": "instance", "Tags": [
                {"Key": TAG_GROUP, "Value": self.group}, {"Key": TAG_MANAGED, "Value": "true"}]}],
        )
        inst = out["Instances"][0]
        self.az = inst["Placement"]["AvailabilityZone"]
        return inst["InstanceId"]

    def setup(self) -> dict:
        self.instance_id = self._launch()
        vol = self.ec2.create_volume(
            AvailabilityZone=self.az, Size=20, VolumeType="gp3", Encrypted=True,
            TagSpecifications=[{"ResourceType": "volume", "Tags": [
                {"Key": TAG_GROUP, "Value": self.group}, {"Key": TAG_DEVICE, "Value": self.device},
                {"Key": TAG_RETAIN, "Value": "true"}]}],
        )
        self.volume_id = vol["VolumeId"]
        self.ec2.attach_volume(VolumeId=self.volume_id, InstanceId=self.instance_id, Device=self.device)
        return {"instance_id": self.instance_id, "volume_id": self.volume_id, "az": self.az}

    def reclaim(self, index: int) -> dict:
        started = time.monotonic()
        old = self.instance_id
        self.ec2.terminate_instances(InstanceIds=[old])
        volume = self.ec2.describe_volumes(VolumeIds=[self.volume_id])["Volumes"][0]
        survived = volume["State"] == "available"
        self.instance_id = self._launch()
        result = recover_volumes(self.ec2, self.group, RunContext(journal_dir=self.journal_dir / f"reclaim-{index}",
                                                                   wait_delay=0.2, wait_attempts=50))
        volume = self.ec2.describe_volumes(VolumeIds=[self.volume_id])["Volumes"][0]
        attached = [a for a in volume.get("Attachments", []) if a.get("State") in ("attached", "attaching")]
        return {
            "volume_id": self.volume_id,
            "survived_termination": survived,
            "from_instance": old,
            "to_instance": self.instance_id,
            "reattached": bool(attached) and attached[0]["InstanceId"] == self.instance_id
                          and attached[0]["Device"] == self.device,
            "device": attached[0]["Device"] if attached else None,
            "runbook_actions": len(getattr(result, "actions", []) or []),
            "seconds": round(time.monotonic() - started, 3),
        }
