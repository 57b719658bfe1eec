"""What every spotkit stack has: the AWS provider with a version range that admits both the current
6.x and 5.100 (found in air-gapped mirrors), default tags, and the config it was built from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from cdktn import TerraformStack
from constructs import Construct

from spotkit.runtime.notice import TAG_NAME, TAG_STACK

AWS_PROVIDER_CONSTRAINT = ">= 5.100, < 7"
TERRAFORM_CONSTRAINT = ">= 1.5"


@dataclass(frozen=True)
class StackConfig:
    """Settings every stack has.

    - ``name``: prefix of every resource name; 2-40 lowercase letters, digits, hyphens.
    - ``region``: AWS region. Default us-east-1.
    - ``tags``: tags on every resource (provider default tags).
    """

    name: str = "spotkit"
    region: str = "us-east-1"
    tags: Mapping[str, str] = field(default_factory=dict)


class SpotkitStack(TerraformStack):
    """A TerraformStack with the AWS provider configured; the config is kept on ``self.config``."""

    description = ""

    def __init__(self, scope: Construct, id_: str, config: StackConfig):
        super().__init__(scope, id_)
        from cdktn_aws.provider import AwsProvider

        from spotkit.constructs.tags import check_tags

        check_tags(config.tags, f"stack {id_!r} tags")  # AWS's limits, before any resource
        self.config = config
        self.region = config.region
        AwsProvider(
            self, "aws",
            region=config.region,
            default_tags=[{"tags": {TAG_STACK: id_, TAG_NAME: config.name, **dict(config.tags)}}],
        )
        # The generated bindings pin the exact 6.x they were built from; widen it to what we support.
        self.add_override("terraform.required_providers.aws.version", AWS_PROVIDER_CONSTRAINT)
        self.add_override("terraform.required_version", TERRAFORM_CONSTRAINT)

    def resolve_network(self, settings) -> tuple[str, list[str]]:
        """(vpc_id, private subnet ids): the user's own network, or a created ``SpotNetwork`` kept on
        ``self.network`` (``spotkit.constructs.network.NetworkSettings`` says which)."""
        if settings.bring_your_own:
            return settings.vpc_id, list(settings.subnet_ids)
        from spotkit.constructs.network import SpotNetwork

        self.network = SpotNetwork(self, "network", name=self.config.name, region=self.config.region, settings=settings)
        return self.network.vpc_id, self.network.private_subnet_ids

    def route_cluster_interruptions(self, settings, cluster, fallback):
        """``route_interruptions`` for an ``EcsSpotCluster`` named after the stack: the warnings of its groups,
        its container instances drained by the handler, and with ``fallback`` its task placement failures."""
        return self.route_interruptions(settings, [g.name for g in cluster.groups.values()],
                                        clusters=[self.config.name], fallback=fallback,
                                        placement_clusters=[cluster.cluster_arn])

    def attach_checkpoints(self, settings, vpc_id: str, subnet_ids, target):
        """EFS checkpoints (``spotkit.constructs.efs_checkpoints``) mounted on ``target`` (a compute group or
        spot instance), kept on ``self.checkpoints``, with the file system id as an output. ``settings.enabled``
        off: nothing, and None."""
        if not settings.enabled:
            return None
        from cdktn import TerraformOutput

        from spotkit.constructs.efs_checkpoints import EfsCheckpoints

        self.checkpoints = EfsCheckpoints(self, "checkpoints", name=self.config.name, vpc_id=vpc_id,
                                          subnet_ids=subnet_ids, settings=settings)
        self.checkpoints.attach(target)
        TerraformOutput(self, "checkpoint_file_system_id", value=self.checkpoints.file_system.id)
        return self.checkpoints

    def route_interruptions(self, settings, groups, clusters=(), *, fallback=None, placement_clusters=()):
        """Route the groups' interruption warnings to the spotkit handler (EventBridge -> SQS -> handler),
        with the queue URL and journal table as outputs. ``settings`` None routes nothing. ``clusters``: the
        stack's ECS clusters, where the handler looks and may drain unless ``settings.ecs_clusters`` names others.
        ``fallback`` (``spotkit.constructs.capacity_fallback.FallbackSettings``): also route capacity failures (of the
        groups, and of the ECS ``placement_clusters``) and the return check."""
        if settings is None:
            return None
        import dataclasses

        from cdktn import TerraformOutput

        if clusters and not settings.ecs_clusters:
            settings = dataclasses.replace(settings, ecs_clusters=tuple(clusters))

        from spotkit.constructs.interruption_events import InterruptionEvents

        self.interruptions = InterruptionEvents(self, "interruptions", name=self.config.name, groups=list(groups),
                                                settings=settings, fallback=fallback,
                                                placement_clusters=list(placement_clusters))
        TerraformOutput(self, "interruption_queue_url", value=self.interruptions.queue_url)
        TerraformOutput(self, "interruption_journal_table", value=self.interruptions.journal.name)
        return self.interruptions
