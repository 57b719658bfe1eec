"""Training stack: a spot training fleet from the compute group, in a small VPC or your own subnets."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Optional

from cdktn import TerraformOutput
from constructs import Construct

from spotkit.constructs.compute_group import ComputeGroupSettings, SpotComputeGroup
from spotkit.constructs.data_volume import DataVolumeSettings, RetainedDataVolumes, SnapshotSettings
from spotkit.constructs.efs_checkpoints import EfsCheckpointSettings
from spotkit.constructs.interruption_events import InterruptionEventsSettings
from spotkit.constructs.network import NetworkSettings, validate_network
from spotkit.constructs.operator_policy import OperatorPolicy
from spotkit.stacks.base import SpotkitStack, StackConfig


@dataclass(frozen=True)
class TrainingConfig(StackConfig):
    """Training fleet settings. Defaults synthesize with no config.

    - ``network``: bring your own ``vpc_id``/``subnet_ids`` or a created VPC (default, 2 AZs).
    - ``group``: the compute group (default: 3 general-purpose types, all spot, 0-4 instances).
    - ``checkpoints``: EFS checkpoints mounted on every instance (default on, /mnt/checkpoints).
    - ``data_volume``: a data volume kept on terminate, tagged for the runbooks (default 200 GiB gp3 at
      /dev/sdf -> /mnt/data); null for none. ``snapshots``: its DLM schedule (default every 12 h, keep 14).
    - ``interruptions``: interruption warnings routed to the spotkit handler (EventBridge rules -> SQS ->
      Lambda, journal, FIS template), scoped to the group (default on); null for none.
    """

    name: str = "spotkit-training"
    network: NetworkSettings = field(default_factory=NetworkSettings)
    group: ComputeGroupSettings = field(default_factory=ComputeGroupSettings)
    checkpoints: EfsCheckpointSettings = field(default_factory=EfsCheckpointSettings)
    data_volume: Optional[DataVolumeSettings] = field(default_factory=DataVolumeSettings)
    snapshots: SnapshotSettings = field(default_factory=SnapshotSettings)
    interruptions: Optional[InterruptionEventsSettings] = field(default_factory=InterruptionEventsSettings)


def training_agent_defaults(group: ComputeGroupSettings) -> ComputeGroupSettings:
    """Training keeps training through the notice: checkpoint-and-continue, the final checkpoint given at
    least 60 s (the placeholder hook measures nothing), unless the config says otherwise."""
    agent = group.agent
    if agent.notice_policy is None:
        agent = replace(agent, notice_policy="checkpoint-and-continue",
                        checkpoint_seconds=min(60.0, max(0.0, 119.0 - agent.margin))
                        if agent.checkpoint_seconds is None else agent.checkpoint_seconds)
    return replace(group, agent=agent)


class TrainingStack(SpotkitStack):
    description = "Spot training fleet"

    def __init__(self, scope: Construct, id_: str, config: TrainingConfig = TrainingConfig()):
        validate_network(config.network)
        super().__init__(scope, id_, config)
        vpc_id, subnet_ids = self.resolve_network(config.network)
        self.group = SpotComputeGroup(self, "fleet", name=config.name, vpc_id=vpc_id, subnet_ids=subnet_ids,
                                      settings=training_agent_defaults(config.group))
        self.attach_checkpoints(config.checkpoints, vpc_id, subnet_ids, self.group)
        if config.data_volume is not None:
            self.data_volumes = RetainedDataVolumes(self, "data", group=self.group, volumes=[config.data_volume],
                                                    snapshots=config.snapshots)
        self.route_interruptions(config.interruptions, [self.group.name])
        self.operator = OperatorPolicy(self, "operator", name=config.name, groups=[self.group.name])
        TerraformOutput(self, "group_name", value=self.group.group_name)
        TerraformOutput(self, "launch_template_id", value=self.group.launch_template.id)
        TerraformOutput(self, "security_group_id", value=self.group.security_group_id)
