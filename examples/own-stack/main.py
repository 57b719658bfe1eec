"""Your own CDKTF app, built from spotkit's constructs (pip install spotkit; see docs/install.md).

A spot training fleet in its own small VPC, with a data volume that outlives every instance (re-attached
to the replacement by `spotkit recover volumes`) and the interruption warnings routed to spotkit's handler.

    spotkit synth              # or: cdktf synth (cdktf-cli 0.21)
    spotkit check cdktf.out    # spot-readiness rules
    spotkit local start && spotkit plan my-training --target local
"""

from cdktn import App, TerraformOutput
from constructs import Construct

from spotkit.constructs.compute_group import ComputeGroupSettings, SpotComputeGroup
from spotkit.constructs.data_volume import DataVolumeSettings, RetainedDataVolumes
from spotkit.constructs.interruption_events import InterruptionEvents, InterruptionEventsSettings
from spotkit.constructs.network import NetworkSettings, SpotNetwork
from spotkit.stacks.base import SpotkitStack, StackConfig

NAME = "my-training"
REGION = "us-east-1"


class MyTraining(SpotkitStack):
    """SpotkitStack: a TerraformStack with the AWS provider (region, default tags) and the provider and
    Terraform version ranges spotkit is tested with (AWS provider >= 5.100, < 7; Terraform >= 1.5)."""

    def __init__(self, scope: Construct, id_: str):
        super().__init__(scope, id_, StackConfig(name=NAME, region=REGION, tags={"team": "ml"}))
        network = SpotNetwork(self, "network", name=NAME, region=REGION, settings=NetworkSettings(az_count=2))
        group = SpotComputeGroup(
            self, "gpus", name=NAME, vpc_id=network.vpc_id, subnet_ids=network.private_subnet_ids,
            settings=ComputeGroupSettings(instance_types=("g5.xlarge", "g6.xlarge", "g5.2xlarge"), max_size=4),
        )
        RetainedDataVolumes(self, "data", group=group, volumes=[DataVolumeSettings(size_gib=500)])
        events = InterruptionEvents(self, "interruptions", name=NAME, groups=[group.name],
                                    settings=InterruptionEventsSettings())
        TerraformOutput(self, "group_name", value=group.group_name)
        TerraformOutput(self, "interruption_queue_url", value=events.queue_url)


app = App()
MyTraining(app, NAME)
app.synth()
