"""moto gap: ``ListContainerInstances`` ignores its ``filter`` (the cluster query language).

moto 5.2 documents "The filter-parameter (cluster query language) is not yet implemented" and returns
every container instance of the cluster. In AWS, ``filter="ec2InstanceId in ['i-1', 'i-2']"`` (or
``ec2InstanceId == i-1``) lists only the container instances on those EC2 instances. The interruption
handler lists a batch's container instances with that filter (one call per cluster per batch), so
this extension applies the two ``ec2InstanceId`` forms; any other expression is refused with AWS's
``InvalidParameterException`` instead of being silently ignored.

Reuse: ``install()`` (done by tests/support/moto_server.py at import).
"""

from __future__ import annotations

import re

from moto.ecs.exceptions import InvalidParameterException
from moto.ecs.responses import EC2ContainerServiceResponse

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


def install() -> None:
    """Patch moto's ECS ListContainerInstances (idempotent)."""
    EC2ContainerServiceResponse.list_container_instances = _list_container_instances
