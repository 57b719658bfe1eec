"""ECS: CreateService keeps what was set; ListContainerInstances applies its filter.

``CreateService``: moto 5.2 drops the capacity provider strategy, placement, grace period and tagging
settings, and reports launch type EC2 for a service on capacity providers.

``ListContainerInstances`` ignores its ``filter`` (the cluster query language): moto 5.2 documents "The
filter-parameter (cluster query language) is not yet implemented" and returns every container instance of
the cluster. In AWS, ``filter="ec2InstanceId in ['i-1', 'i-2']"`` (or
``ec2InstanceId == i-1``) lists only the container instances on those EC2 instances. The interruption
handler lists a batch's container instances with that filter (one call per cluster per batch), so
the emulator applies the two ``ec2InstanceId`` forms; any other expression is refused with AWS's
``InvalidParameterException`` instead of being silently ignored.
"""

from __future__ import annotations

import re

from moto.ecs.exceptions import InvalidParameterException
from moto.ecs.responses import EC2ContainerServiceResponse

from spotkit.rehearsal.local.patches import Patch, sets, wrap_once

_original = EC2ContainerServiceResponse.list_container_instances
_EQ = re.compile(r"^\s*ec2InstanceId\s*==\s*'?([\w-]+)'?\s*$")
_IN = re.compile(r"^\s*ec2InstanceId\s+in\s*\[(.*)\]\s*$")


def instance_ids_of(expression: str) -> set[str]:
    """The instance ids an ``ec2InstanceId`` expression names (``==`` or ``in [...]``)."""
    m = _EQ.match(expression)
    if m:
        return {m.group(1)}
    m = _IN.match(expression)
    if m:
        return {part.strip().strip("'\"") for part in m.group(1).split(",") if part.strip()}
    raise InvalidParameterException(f"filter {expression!r}: only ec2InstanceId == / in [...] are emulated")


def _list_container_instances(self):
    expression = self._get_param("filter")
    if not expression:
        return _original(self)
    wanted = instance_ids_of(expression)
    cluster = self._get_param("cluster", "default").split("/")[-1]
    status = self._get_param("status")
    arns = sorted(ci.container_instance_arn for ci in self.ecs_backend.container_instances.get(cluster, {}).values()
                  if ci.ec2_instance_id in wanted and (status is None or ci.status == status))
    from moto.core.responses import ActionResult

    return ActionResult({"containerInstanceArns": arns})


SERVICE_SETTINGS = {  # CreateService parameter -> moto Service attribute (serialized under the AWS name)
    "capacityProviderStrategy": "capacity_provider_strategy",
    "placementStrategy": "placement_strategy",
    "placementConstraints": "placement_constraints",
    "healthCheckGracePeriodSeconds": "health_check_grace_period_seconds",
    "enableECSManagedTags": "enable_ecs_managed_tags",
    "enableExecuteCommand": "enable_execute_command",
    "availabilityZoneRebalancing": "availability_zone_rebalancing",
}


def _service_settings() -> None:
    wrap_once(EC2ContainerServiceResponse, "create_service", _keeping_settings)


def _keeping_settings(original):
    def create_service(self):
        result = original(self)
        service = self.ecs_backend.describe_services(self._get_param("cluster", "default"),
                                                     [self._get_param("serviceName")])[0][0]
        for param, attr in SERVICE_SETTINGS.items():
            value = self._get_param(param)
            if value is not None:
                setattr(service, attr, value)
        if self._get_param("capacityProviderStrategy") and not self._get_param("launchType"):
            service.launch_type = None  # AWS reports no launch type for a service on capacity providers
        return result

    return create_service


_API = "https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_"

PATCHES = (
    Patch("ecs", ("CreateService",),
          "keeps the capacity provider strategy, placement strategy/constraints, health check grace period, managed "
          "tags, execute command and AZ rebalancing as set, and reports no launch type on capacity providers",
          "drops capacityProviderStrategy, placementStrategy/Constraints, healthCheckGracePeriodSeconds, "
          "enableECSManagedTags, enableExecuteCommand and availabilityZoneRebalancing, and reports launchType EC2 "
          "for a service on capacity providers, so every re-plan wanted to replace the service",
          f"{_API}CreateService.html", _service_settings),
    Patch("ecs", ("ListContainerInstances",),
          "applies the filter (cluster query language) ec2InstanceId == id / in [...]",
          "ignores the filter and lists every container instance of the cluster; the batched interruption handler "
          "lists one batch's container instances per cluster (any other expression is refused with "
          "InvalidParameterException, not ignored)", f"{_API}ListContainerInstances.html",
          sets("moto.ecs.responses", "EC2ContainerServiceResponse",
               list_container_instances=_list_container_instances)),
)
