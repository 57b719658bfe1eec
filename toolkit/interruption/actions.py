"""The actions an interruption warning leads to. Each one is idempotent (it looks before it acts, so
running it twice changes nothing the second time) and takes ``dry_run``, honoured at the mutating
call itself: it still reads, then logs "would have ..." instead of writing.

Public API (reused by ``spotkit recover drain``):

- ``drain_instance(clients, instance_id, *, dry_run, ...) -> DrainResult``: deregister the instance
  from every ELB target group it is in (first, so traffic leaves before the instance dies), set its
  ECS container instance to DRAINING, and ask it to checkpoint through SSM Run Command.
- ``deregister_from_target_groups``, ``drain_ecs_container_instance``, ``send_checkpoint``,
  ``complete_lifecycle_action``, ``start_replacement``: the single steps.
- ``is_drained(clients, result)``: whether what ``drain_instance`` started has finished.

Errors: a throttled or unavailable AWS call raises ``RetryEvent`` (retry the whole event; every step
is idempotent); any other failure of a step is recorded in its ``ActionResult`` (``status="failed"``)
so the remaining steps still run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

from botocore.exceptions import BotoCoreError, ClientError, ConnectionClosedError, EndpointConnectionError

from toolkit.interruption.events import LifecycleAction, RetryEvent

log = logging.getLogger("spotkit.interruption")

DONE = "done"          # the call was made and changed something
SKIPPED = "skipped"    # nothing to do (already done, not applicable)
WOULD = "would"        # dry run: the call that would have changed something was not made
FAILED = "failed"      # the call failed in a way retrying will not fix

RETRYABLE_CODES = frozenset({
    "Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException",
    "RequestThrottled", "RequestThrottledException", "ProvisionedThroughputExceededException",
    "ServiceUnavailable", "ServiceUnavailableException", "InternalError", "InternalFailure",
    "InternalServerError", "RequestTimeout", "RequestTimeoutException",
})
REPLACEMENT_TAG = "spotkit:replacement-requested"
DEFAULT_CHECKPOINT_DOCUMENT = "AWS-RunShellScript"


@dataclass
class Clients:
    """The boto3 clients the actions use. ``factory(service)`` builds the ones not given, on first use."""

    factory: Optional[Callable[[str], Any]] = None
    _made: dict = field(default_factory=dict, repr=False)

    def get(self, service: str):
        if service not in self._made:
            if self.factory is None:
                raise ValueError(f"no {service} client was given and Clients has no factory")
            self._made[service] = self.factory(service)
        return self._made[service]

    @classmethod
    def of(cls, factory: Optional[Callable[[str], Any]] = None, **clients) -> "Clients":
        c = cls(factory=factory)
        c._made.update(clients)
        return c

    ec2 = property(lambda self: self.get("ec2"))
    elbv2 = property(lambda self: self.get("elbv2"))
    ecs = property(lambda self: self.get("ecs"))
    ssm = property(lambda self: self.get("ssm"))
    autoscaling = property(lambda self: self.get("autoscaling"))
    dynamodb = property(lambda self: self.get("dynamodb"))


@dataclass
class ActionResult:
    name: str
    status: str
    message: str
    detail: dict = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return self.status == DONE


@dataclass
class DrainResult:
    instance_id: str
    dry_run: bool
    actions: list[ActionResult] = field(default_factory=list)

    def action(self, name: str) -> Optional[ActionResult]:
        return next((a for a in self.actions if a.name == name), None)

    @property
    def failed(self) -> list[ActionResult]:
        return [a for a in self.actions if a.status == FAILED]


def _code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


def _guard(name: str, instance_id: str, fn: Callable[[], ActionResult]) -> ActionResult:
    """Run one step: transient errors become ``RetryEvent``, others a failed ``ActionResult``."""
    try:
        return fn()
    except ClientError as exc:
        if _code(exc) in RETRYABLE_CODES:
            raise RetryEvent(f"{name} for {instance_id}: {exc}") from exc
        return ActionResult(name, FAILED, f"{name} for {instance_id} failed: {exc}", {"error": _code(exc)})
    except (EndpointConnectionError, ConnectionClosedError) as exc:
        raise RetryEvent(f"{name} for {instance_id}: {exc}") from exc
    except BotoCoreError as exc:
        return ActionResult(name, FAILED, f"{name} for {instance_id} failed: {exc}", {"error": type(exc).__name__})


# --- ELB target groups --------------------------------------------------------------------------

def list_target_groups(elbv2) -> list[str]:
    arns: list[str] = []
    for page in elbv2.get_paginator("describe_target_groups").paginate():
        arns.extend(tg["TargetGroupArn"] for tg in page["TargetGroups"] if tg.get("TargetType", "instance") == "instance")
    return arns


def _registrations(elbv2, instance_id: str, target_group_arns: Sequence[str]) -> dict[str, list[dict]]:
    """Target group ARN -> this instance's targets in it (id and port), draining ones left out."""
    found: dict[str, list[dict]] = {}
    for arn in target_group_arns:
        try:
            health = elbv2.describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"]
        except ClientError as exc:
            if _code(exc) == "TargetGroupNotFound":
                continue  # deleted since it was listed
            raise
        targets = [{"Id": h["Target"]["Id"], **({"Port": h["Target"]["Port"]} if "Port" in h["Target"] else {})}
                   for h in health
                   if h["Target"]["Id"] == instance_id and h.get("TargetHealth", {}).get("State") not in ("draining", "unused")]
        if targets:
            found[arn] = targets
    return found


def deregister_from_target_groups(elbv2, instance_id: str, *, dry_run: bool,
                                  target_group_arns: Optional[Sequence[str]] = None) -> ActionResult:
    """Deregister ``instance_id`` from every instance target group it is registered in (every port)."""
    name = "deregister-targets"

    def run() -> ActionResult:
        arns = list(target_group_arns) if target_group_arns is not None else list_target_groups(elbv2)
        found = _registrations(elbv2, instance_id, arns)
        if not found:
            return ActionResult(name, SKIPPED, f"{instance_id} is in no target group (of {len(arns)})",
                                {"target_groups": []})
        for arn, targets in found.items():
            if dry_run:
                log.info("would have deregistered %s (%s) from %s", instance_id, targets, arn)
            else:
                elbv2.deregister_targets(TargetGroupArn=arn, Targets=targets)
        verb = "would have deregistered" if dry_run else "deregistered"
        return ActionResult(name, WOULD if dry_run else DONE,
                            f"{verb} {instance_id} from {len(found)} target group(s)",
                            {"target_groups": sorted(found)})

    return _guard(name, instance_id, run)


def targets_drained(elbv2, instance_id: str, target_group_arns: Sequence[str]) -> bool:
    """True when the instance is no longer a target (or only ``unused``) in any of these groups."""
    for arn in target_group_arns:
        try:
            health = elbv2.describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"]
        except ClientError as exc:
            if _code(exc) == "TargetGroupNotFound":
                continue
            raise
        if any(h["Target"]["Id"] == instance_id and h.get("TargetHealth", {}).get("State") != "unused" for h in health):
            return False
    return True


# --- ECS ----------------------------------------------------------------------------------------

def _container_instances(ecs, instance_id: str, clusters: Optional[Sequence[str]]) -> list[dict]:
    if clusters is None:
        clusters = [arn for page in ecs.get_paginator("list_clusters").paginate() for arn in page["clusterArns"]]
    found = []
    for cluster in clusters:
        arns = ecs.list_container_instances(cluster=cluster, filter=f"ec2InstanceId == {instance_id}")["containerInstanceArns"]
        if not arns:
            continue
        described = ecs.describe_container_instances(cluster=cluster, containerInstances=arns)["containerInstances"]
        # Match on the instance id ourselves: not every emulator applies the filter expression.
        found.extend({**ci, "cluster": cluster} for ci in described if ci.get("ec2InstanceId") == instance_id)
    return found


def drain_ecs_container_instance(ecs, instance_id: str, *, dry_run: bool,
                                 clusters: Optional[Sequence[str]] = None) -> ActionResult:
    """Set the ECS container instance on ``instance_id`` (in any cluster, or in ``clusters``) to
    DRAINING, so ECS moves its tasks elsewhere and places no new ones."""
    name = "ecs-drain"

    def run() -> ActionResult:
        found = _container_instances(ecs, instance_id, clusters)
        if not found:
            return ActionResult(name, SKIPPED, f"{instance_id} is no ECS container instance", {"container_instances": []})
        todo = [ci for ci in found if ci.get("status") != "DRAINING"]
        arns = sorted(ci["containerInstanceArn"] for ci in found)
        if not todo:
            return ActionResult(name, SKIPPED, f"{instance_id} is already DRAINING", {"container_instances": arns})
        for ci in todo:
            if dry_run:
                log.info("would have set %s in %s to DRAINING", ci["containerInstanceArn"], ci["cluster"])
            else:
                ecs.update_container_instances_state(cluster=ci["cluster"], containerInstances=[ci["containerInstanceArn"]],
                                                     status="DRAINING")
        verb = "would have set" if dry_run else "set"
        return ActionResult(name, WOULD if dry_run else DONE,
                            f"{verb} {len(todo)} container instance(s) on {instance_id} to DRAINING",
                            {"container_instances": arns, "clusters": sorted({ci["cluster"] for ci in found})})

    return _guard(name, instance_id, run)


def ecs_drained(ecs, instance_id: str, clusters: Optional[Sequence[str]] = None) -> bool:
    return all(int(ci.get("runningTasksCount", 0)) == 0 for ci in _container_instances(ecs, instance_id, clusters))


# --- SSM checkpoint -----------------------------------------------------------------------------

def checkpoint_comment(event_id: str) -> str:
    return f"spotkit checkpoint {event_id}"[:100]


def send_checkpoint(ssm, instance_id: str, command: str, *, dry_run: bool, event_id: str,
                    document: str = DEFAULT_CHECKPOINT_DOCUMENT, timeout_seconds: int = 110) -> ActionResult:
    """Run the checkpoint hook on the instance with SSM Run Command, once per event: a command whose
    comment names this event is looked for first."""
    name = "checkpoint"
    comment = checkpoint_comment(event_id)

    def run() -> ActionResult:
        for page in ssm.get_paginator("list_commands").paginate(InstanceId=instance_id):
            for cmd in page["Commands"]:
                if cmd.get("Comment") == comment:
                    return ActionResult(name, SKIPPED, f"checkpoint already sent to {instance_id} ({cmd['CommandId']})",
                                        {"command_id": cmd["CommandId"]})
        if dry_run:
            log.info("would have sent %r to %s with %s", command, instance_id, document)
            return ActionResult(name, WOULD, f"would have sent the checkpoint command to {instance_id}",
                                {"command": command})
        sent = ssm.send_command(InstanceIds=[instance_id], DocumentName=document, Comment=comment,
                                Parameters={"commands": [command]}, TimeoutSeconds=max(30, timeout_seconds))
        cid = sent["Command"]["CommandId"]
        return ActionResult(name, DONE, f"sent the checkpoint command to {instance_id} ({cid})",
                            {"command_id": cid, "command": command})

    return _guard(name, instance_id, run)


def checkpoint_finished(ssm, instance_id: str, command_id: str) -> bool:
    try:
        status = ssm.get_command_invocation(CommandId=command_id, InstanceId=instance_id)["Status"]
    except ClientError as exc:
        if _code(exc) == "InvocationDoesNotExist":
            return False
        raise
    return status not in ("Pending", "InProgress", "Delayed")


# --- Auto Scaling -------------------------------------------------------------------------------

def complete_lifecycle_action(autoscaling, instance_id: str, lifecycle: LifecycleAction, *, dry_run: bool,
                              result: str = "CONTINUE") -> ActionResult:
    """Tell Auto Scaling the instance may go. Completing an action that is no longer pending (already
    completed, or timed out) is not an error: it is reported as skipped."""
    name = "complete-lifecycle-action"

    def run() -> ActionResult:
        if dry_run:
            log.info("would have completed lifecycle action %s/%s for %s with %s",
                     lifecycle.group_name, lifecycle.hook_name, instance_id, result)
            return ActionResult(name, WOULD, f"would have completed the lifecycle action for {instance_id}",
                                {"group": lifecycle.group_name, "hook": lifecycle.hook_name, "result": result})
        try:
            identity = {"LifecycleActionToken": lifecycle.token} if lifecycle.token else {}
            autoscaling.complete_lifecycle_action(
                AutoScalingGroupName=lifecycle.group_name, LifecycleHookName=lifecycle.hook_name,
                LifecycleActionResult=result, InstanceId=instance_id, **identity)
        except ClientError as exc:
            if _code(exc) == "ValidationError" and "No active Lifecycle Action" in str(exc):
                return ActionResult(name, SKIPPED, f"no pending lifecycle action for {instance_id} (already completed or timed out)",
                                    {"group": lifecycle.group_name, "hook": lifecycle.hook_name})
            raise
        return ActionResult(name, DONE, f"completed the lifecycle action for {instance_id} with {result}",
                            {"group": lifecycle.group_name, "hook": lifecycle.hook_name, "result": result})

    return _guard(name, instance_id, run)


def start_replacement(autoscaling, ec2, instance_id: str, group_name: str, *, dry_run: bool,
                      event_id: str) -> ActionResult:
    """Raise the group's desired capacity by one so a replacement starts before the instance is taken.

    Once per instance: the instance gets the tag ``spotkit:replacement-requested=<event id>`` first,
    and an instance that has it is skipped. Capped at the group's max_size. The extra unit stays until
    the group scales in (capacity rebalancing or your scaling policy), as with AWS's own rebalancing.
    """
    name = "start-replacement"

    def run() -> ActionResult:
        reservations = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
        tags = {t["Key"]: t["Value"] for r in reservations for i in r["Instances"] for t in i.get("Tags", [])}
        if REPLACEMENT_TAG in tags:
            return ActionResult(name, SKIPPED, f"a replacement for {instance_id} was already requested",
                                {"by_event": tags[REPLACEMENT_TAG]})
        groups = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[group_name])["AutoScalingGroups"]
        if not groups:
            return ActionResult(name, FAILED, f"group {group_name} does not exist", {"group": group_name})
        desired, maximum = groups[0]["DesiredCapacity"], groups[0]["MaxSize"]
        if desired >= maximum:
            return ActionResult(name, SKIPPED, f"group {group_name} is at max_size ({maximum}); no room for a replacement",
                                {"group": group_name, "desired": desired})
        if dry_run:
            log.info("would have raised %s desired capacity %d -> %d", group_name, desired, desired + 1)
            return ActionResult(name, WOULD, f"would have raised {group_name} to {desired + 1}", {"group": group_name})
        ec2.create_tags(Resources=[instance_id], Tags=[{"Key": REPLACEMENT_TAG, "Value": event_id[:255]}])
        autoscaling.set_desired_capacity(AutoScalingGroupName=group_name, DesiredCapacity=desired + 1, HonorCooldown=False)
        return ActionResult(name, DONE, f"raised {group_name} desired capacity {desired} -> {desired + 1}",
                            {"group": group_name, "desired": desired + 1})

    return _guard(name, instance_id, run)


# --- the composite the runbooks reuse -----------------------------------------------------------

def drain_instance(clients: Clients, instance_id: str, *, dry_run: bool, checkpoint_command: Optional[str] = None,
                   event_id: Optional[str] = None, target_group_arns: Optional[Sequence[str]] = None,
                   clusters: Optional[Sequence[str]] = None, deregister: bool = True, ecs: bool = True,
                   checkpoint_timeout_seconds: int = 110) -> DrainResult:
    """Take ``instance_id`` out of service, in this order: ELB targets, ECS, checkpoint.

    ``event_id`` makes the checkpoint once-only (default: ``manual:<instance>``). Steps that fail
    without hope of a retry are in ``result.failed``; transient errors raise ``RetryEvent``.
    """
    result = DrainResult(instance_id=instance_id, dry_run=dry_run)
    if deregister:
        result.actions.append(deregister_from_target_groups(clients.elbv2, instance_id, dry_run=dry_run,
                                                            target_group_arns=target_group_arns))
    if ecs:
        result.actions.append(drain_ecs_container_instance(clients.ecs, instance_id, dry_run=dry_run, clusters=clusters))
    if checkpoint_command:
        result.actions.append(send_checkpoint(clients.ssm, instance_id, checkpoint_command, dry_run=dry_run,
                                              event_id=event_id or f"manual:{instance_id}",
                                              timeout_seconds=checkpoint_timeout_seconds))
    return result


def is_drained(clients: Clients, result: DrainResult, *, clusters: Optional[Sequence[str]] = None) -> bool:
    """Whether the work ``drain_instance`` started is over: no longer a target, no running ECS tasks,
    the checkpoint command finished. A dry run is drained at once (nothing was started)."""
    if result.dry_run:
        return True
    dereg = result.action("deregister-targets")
    if dereg and dereg.detail.get("target_groups") and not targets_drained(
            clients.elbv2, result.instance_id, dereg.detail["target_groups"]):
        return False
    ecs = result.action("ecs-drain")
    if ecs and ecs.detail.get("container_instances") and not ecs_drained(
            clients.ecs, result.instance_id, clusters or ecs.detail.get("clusters")):
        return False
    cp = result.action("checkpoint")
    if cp and cp.detail.get("command_id") and not checkpoint_finished(clients.ssm, result.instance_id, cp.detail["command_id"]):
        return False
    return True
