"""ECS on spot for CPU services: a cluster with a spot and an on-demand capacity provider, in a small VPC
or your own subnets. Services placed with the cluster default strategy keep a base on on-demand."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from cdktn import TerraformOutput
from constructs import Construct

from spotkit.constructs.capacity_fallback import FallbackSettings, validate_fallback
from spotkit.constructs.ecs_spot import EcsClusterSettings, EcsSpotCluster, validate_cluster
from spotkit.constructs.interruption_events import InterruptionEventsSettings
from spotkit.constructs.network import NetworkSettings, validate_network
from spotkit.stacks.base import SpotkitStack, StackConfig


@dataclass(frozen=True)
class EcsSpotConfig(StackConfig):
    """ECS-on-spot settings. Defaults synthesize with no config.

    - ``network``: bring your own ``vpc_id``/``subnet_ids`` or a created VPC (default, 2 AZs).
    - ``cluster``: capacity providers, default strategy, agent settings (see ``EcsClusterSettings``).
    - ``interruptions``: spot, rebalance and lifecycle warnings of both groups routed to the spotkit
      handler (EventBridge -> SQS -> Lambda), which deregisters targets and sets the ECS container
      instance DRAINING before the instance goes. ``None``: not routed (``spotkit check`` warns SPOT011).
    - ``fallback``: on a spot capacity failure raise the spot group's on-demand base by its shortfall
      (at most ``max_on_demand_base``), and return to spot on a schedule in steps a ``hold_minutes``
      apart (see ``spotkit.constructs.capacity_fallback.FallbackSettings``). Default on; needs ``interruptions``.
    """

    name: str = "spotkit-ecs"
    network: NetworkSettings = field(default_factory=NetworkSettings)
    cluster: EcsClusterSettings = field(default_factory=EcsClusterSettings)
    interruptions: Optional[InterruptionEventsSettings] = field(default_factory=InterruptionEventsSettings)
    fallback: FallbackSettings = field(default_factory=FallbackSettings)


class EcsSpotStack(SpotkitStack):
    description = "ECS cluster on spot with an on-demand floor"

    def __init__(self, scope: Construct, id_: str, config: EcsSpotConfig = EcsSpotConfig()):
        validate_network(config.network)
        validate_cluster(config.name, config.cluster)
        validate_fallback(f"ecs_spot {config.name!r}", config.fallback, routed=config.interruptions is not None)
        super().__init__(scope, id_, config)
        vpc_id, subnet_ids = self.resolve_network(config.network)
        self.cluster = EcsSpotCluster(self, "ecs", name=config.name, vpc_id=vpc_id, subnet_ids=subnet_ids,
                                      settings=config.cluster)
        self.route_cluster_interruptions(config.interruptions, self.cluster, config.fallback)
        TerraformOutput(self, "cluster_name", value=self.cluster.cluster_name)
        TerraformOutput(self, "spot_capacity_provider", value=self.cluster.spot_provider_name)
        TerraformOutput(self, "on_demand_capacity_provider", value=self.cluster.on_demand_provider_name)
