"""Notebook stack: one persistent spot instance that hibernates (or stops) when reclaimed, with a
retained data volume snapshotted by DLM and EFS checkpoints, in a small VPC or your own subnet."""

from __future__ import annotations

from dataclasses import dataclass, field

from cdktn import TerraformOutput
from constructs import Construct

from spotkit.constructs.data_volume import RETAIN_GROUP_TAG, SnapshotPolicy, SnapshotSettings
from spotkit.constructs.efs_checkpoints import EfsCheckpointSettings
from spotkit.constructs.network import NetworkSettings, validate_network
from spotkit.constructs.spot_instance import PersistentSpotInstance, SpotInstanceSettings
from spotkit.stacks.base import SpotkitStack, StackConfig


@dataclass(frozen=True)
class NotebookConfig(StackConfig):
    """Notebook settings. Defaults synthesize with no config.

    - ``network``: bring your own ``vpc_id``/``subnet_ids`` (the instance uses the first subnet) or a created VPC.
    - ``instance``: the persistent spot instance (default m6i.xlarge, hibernate on interruption, 200 GiB data volume).
    - ``snapshots``: DLM schedule of the data volume (default every 12 h, keep 14).
    - ``checkpoints``: EFS checkpoints (default on, mounted at /mnt/checkpoints).
    """

    name: str = "spotkit-notebook"
    network: NetworkSettings = field(default_factory=NetworkSettings)
    instance: SpotInstanceSettings = field(default_factory=SpotInstanceSettings)
    snapshots: SnapshotSettings = field(default_factory=SnapshotSettings)
    checkpoints: EfsCheckpointSettings = field(default_factory=EfsCheckpointSettings)


class NotebookStack(SpotkitStack):
    description = "Persistent spot notebook"

    def __init__(self, scope: Construct, id_: str, config: NotebookConfig = NotebookConfig()):
        validate_network(config.network)
        super().__init__(scope, id_, config)
        vpc_id, subnet_ids = self.resolve_network(config.network)
        self.instance = PersistentSpotInstance(self, "notebook", name=config.name, vpc_id=vpc_id,
                                               subnet_id=subnet_ids[0], settings=config.instance)
        if config.instance.data_volume is not None and config.snapshots.enabled:
            SnapshotPolicy(self, "snapshots", name=config.name, target_tags={RETAIN_GROUP_TAG: config.name},
                           settings=config.snapshots)
        self.attach_checkpoints(config.checkpoints, vpc_id, subnet_ids, self.instance)
        TerraformOutput(self, "instance_id", value=self.instance.instance.id)
        if self.instance.data_volume is not None:
            TerraformOutput(self, "data_volume_id", value=self.instance.data_volume.id)
