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
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

from botocore.exceptions import BotoCoreError, ClientError, ConnectionClosedError, EndpointConnectionError

from spotkit.runtime.interruption.events import LifecycleAction, RetryEvent

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
    _lock: Any = field(default_factory=threading.Lock, repr=False)

    def get(self, service: str):
        """One client per service, shared by every thread (boto3 clients are thread-safe; building
        one is not cheap, so it is built once, under a lock taken only then)."""
        made = self._made.get(service)
        if made is not None:
            return made
        with self._lock:
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


# --- batches: a wave of notices -----------------------------------------------------------------
#
# A wave (a pool, an AZ, a GPU family reclaimed at once) brings hundreds of notices within seconds.
# Acting per notice costs O(targets) reads per notice (the whole target group, every container
# instance of the cluster); the batch functions below take every instance of one receive (up to 10
# SQS messages; more for the Lambda's batching window) and make one call per AWS resource instead:
#
#   DescribeInstances        one per batch (instance-id filter, so an unknown id is no error)
#   DescribeTargetHealth     one per target group per batch; DeregisterTargets one per group
#   ListContainerInstances   one per cluster per batch (filter ec2InstanceId in [...], ACTIVE only);
#                            UpdateContainerInstancesState for up to 10 at a time (the API's limit)
#   SendCommand              one per 50 instances (the API's limit for InstanceIds)
#
# Each returns one ``ActionResult`` per instance, so the journal still records (and the handler still
# retries) per event. A failed call fails only the instances it was for; ``detail["retry"]`` is True
# when the failure is transient (throttling after the client's own retries, a connection error): the
# handler then releases those events for the message's redelivery (every step is idempotent).

UPDATE_CONTAINER_INSTANCES_MAX = 10
SEND_COMMAND_MAX_INSTANCES = 50
DESCRIBE_FILTER_MAX_VALUES = 200
ECS_FILTER_MAX_IDS = 50
CHECKPOINT_COMMENT_PREFIX = "spotkit checkpoint"


def _chunks(items: Sequence, size: int):
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _failure(name: str, ids: Sequence[str], exc: Exception) -> dict[str, ActionResult]:
    """Every instance ``ids`` names failed with ``exc``; ``retry`` says whether a redelivery may fix it."""
    if isinstance(exc, ClientError):
        code, retry = _code(exc), _code(exc) in RETRYABLE_CODES
    else:
        code, retry = type(exc).__name__, isinstance(exc, (EndpointConnectionError, ConnectionClosedError))
    return {i: ActionResult(name, FAILED, f"{name} for {i} failed: {exc}", {"error": code, "retry": retry})
            for i in ids}


_CALL_ERRORS = (ClientError, BotoCoreError)


# Ports a group's targets are registered on (ECS bridge networking registers an instance on ephemeral
# ports): re-read at most once a minute, so a registration made during a wave is seen soon.
REGISTRATIONS_TTL_SECONDS = 60.0


class Discovery:
    """The region's instance target groups and ECS clusters, listed once and reused for ``ttl_seconds``.

    Both change rarely (a deploy), a wave lasts minutes: without the cache every batch would list
    them again. Thread-safe; the lock is held only while a list is refreshed. ``clusters`` given at
    construction (``--cluster``) are used as they are, never listed."""

    def __init__(self, ttl_seconds: float = 300.0, *, clusters: Sequence[str] = (), clock: Optional[Callable[[], float]] = None):
        self.ttl_seconds = ttl_seconds
        self._fixed_clusters = list(clusters)
        self._clock = clock or time.monotonic
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, list[str]]] = {}

    def _get(self, key: str, load: Callable[[], list], ttl: Optional[float] = None) -> list:
        ttl = self.ttl_seconds if ttl is None else ttl
        hit = self._cache.get(key)
        if hit is not None and self._clock() - hit[0] <= ttl:
            return list(hit[1])
        with self._lock:
            hit = self._cache.get(key)
            if hit is None or self._clock() - hit[0] > ttl:
                hit = (self._clock(), load())
                self._cache[key] = hit
            return list(hit[1])

    def target_groups(self, elbv2) -> list[str]:
        return self._get("target_groups", lambda: list_target_groups(elbv2))

    def registrations(self, elbv2, target_group_arn: str) -> dict[str, set]:
        """Instance id -> the ports it was registered on in this group, from one whole-group
        DescribeTargetHealth at most every ``REGISTRATIONS_TTL_SECONDS`` (not once per batch). Only a
        hint of which ports to ask about: ``deregister_batch`` asks for the batch's own targets."""
        rows = self._get(f"registrations:{target_group_arn}", lambda: [
            (h["Target"]["Id"], h["Target"]["Port"])
            for h in elbv2.describe_target_health(TargetGroupArn=target_group_arn)["TargetHealthDescriptions"]
            if "Port" in h["Target"]], ttl=min(self.ttl_seconds, REGISTRATIONS_TTL_SECONDS))
        found: dict[str, set] = {}
        for instance_id, port in rows:
            found.setdefault(instance_id, set()).add(port)
        return found

    def clusters(self, ecs) -> list[str]:
        if self._fixed_clusters:
            return list(self._fixed_clusters)
        return self._get("clusters", lambda: [arn for page in ecs.get_paginator("list_clusters").paginate()
                                              for arn in page["clusterArns"]])


def describe_instances_batch(ec2, instance_ids: Sequence[str]) -> dict[str, dict]:
    """Instance id -> its DescribeInstances entry, for every id that exists (one call per 200 ids; a
    filter, not InstanceIds, so one unknown id does not fail the whole batch)."""
    found: dict[str, dict] = {}
    for chunk in _chunks(sorted(set(instance_ids)), DESCRIBE_FILTER_MAX_VALUES):
        for page in ec2.get_paginator("describe_instances").paginate(
                Filters=[{"Name": "instance-id", "Values": list(chunk)}]):
            for r in page["Reservations"]:
                for inst in r["Instances"]:
                    found[inst["InstanceId"]] = inst
    return found


def batch_targets(instance_ids: Sequence[str], known_ports: Optional[dict] = None) -> list[dict]:
    """The ``Targets`` of a batch's DescribeTargetHealth: each instance by id alone (its registration on
    the group's port), and by id and port for every other port it is known to be registered on."""
    known_ports = known_ports or {}
    asked: list[dict] = []
    for i in instance_ids:
        asked.append({"Id": i})
        asked.extend({"Id": i, "Port": p} for p in sorted(known_ports.get(i, ())))
    return asked


def deregister_batch(elbv2, instance_ids: Sequence[str], target_group_arns: Sequence[str], *,
                     dry_run: bool, registrations: Optional[Callable[[str], dict]] = None) -> dict[str, ActionResult]:
    """``deregister_from_target_groups`` for many instances: per target group one DescribeTargetHealth
    naming the batch's targets (``Targets=``, so the answer is the batch's, not the whole group's) and
    one DeregisterTargets carrying every live registration (every port) of the batch's instances.

    ``registrations(arn)`` (``Discovery.registrations``) names the ports each instance was seen
    registered on, so that a registration on a port other than the group's is asked about too."""
    name = "deregister-targets"
    ids = sorted(set(instance_ids))
    wanted = set(ids)
    results: dict[str, ActionResult] = {}
    found: dict[str, list[str]] = {i: [] for i in ids}
    for arn in target_group_arns:
        live = [i for i in ids if i not in results]
        if not live:
            break
        try:
            asked = batch_targets(live, registrations(arn) if registrations is not None else None)
            health = elbv2.describe_target_health(TargetGroupArn=arn, Targets=asked)["TargetHealthDescriptions"]
        except ClientError as exc:
            if _code(exc) == "TargetGroupNotFound":
                continue  # deleted since it was listed
            results.update(_failure(name, live, exc))
            continue
        except BotoCoreError as exc:
            results.update(_failure(name, live, exc))
            continue
        targets: dict[tuple, dict] = {}  # (id, port) -> target: an id and a port asked for are one registration
        for h in health:
            t = h["Target"]
            if (t["Id"] in wanted and t["Id"] not in results
                    and h.get("TargetHealth", {}).get("State") not in ("draining", "unused")):
                targets.setdefault((t["Id"], t.get("Port")), {"Id": t["Id"], **({"Port": t["Port"]} if "Port" in t else {})})
        if not targets:
            continue
        owners = sorted({t["Id"] for t in targets.values()})
        clean = list(targets.values())
        if dry_run:
            log.info("would have deregistered %s from %s", ", ".join(owners), arn)
        else:
            try:
                elbv2.deregister_targets(TargetGroupArn=arn, Targets=clean)
            except _CALL_ERRORS as exc:
                results.update(_failure(name, owners, exc))
                continue
        for i in owners:
            found[i].append(arn)
    verb = "would have deregistered" if dry_run else "deregistered"
    for i in ids:
        if i in results:
            continue
        if found[i]:
            results[i] = ActionResult(name, WOULD if dry_run else DONE, f"{verb} {i} from {len(found[i])} target group(s)",
                                      {"target_groups": sorted(found[i])})
        else:
            results[i] = ActionResult(name, SKIPPED, f"{i} is in no target group (of {len(target_group_arns)})",
                                      {"target_groups": []})
    return results


def drain_ecs_batch(ecs, instance_ids: Sequence[str], clusters: Sequence[str], *,
                    dry_run: bool) -> dict[str, ActionResult]:
    """``drain_ecs_container_instance`` for many instances: per cluster one ListContainerInstances with
    ``filter="ec2InstanceId in [...]"`` and ``status=ACTIVE`` (what still has to be drained), then
    UpdateContainerInstancesState(DRAINING) for 10 at a time; its answer names each one's instance.
    A dry run describes the listed ones instead (read-only) to know whose they are."""
    name = "ecs-drain"
    ids = sorted(set(instance_ids))
    results: dict[str, ActionResult] = {}
    drained: dict[str, list[tuple[str, str]]] = {i: [] for i in ids}  # instance -> [(cluster, arn)]
    for cluster in clusters:
        for chunk in _chunks([i for i in ids if i not in results], ECS_FILTER_MAX_IDS):
            if not chunk:
                continue
            expression = "ec2InstanceId in [" + ", ".join(f"'{i}'" for i in chunk) + "]"
            try:
                arns = [a for page in ecs.get_paginator("list_container_instances").paginate(
                    cluster=cluster, filter=expression, status="ACTIVE") for a in page["containerInstanceArns"]]
            except _CALL_ERRORS as exc:
                if isinstance(exc, ClientError) and _code(exc) == "ClusterNotFoundException":
                    continue  # deleted since it was listed
                results.update(_failure(name, chunk, exc))
                continue
            for part in _chunks(arns, UPDATE_CONTAINER_INSTANCES_MAX):
                try:
                    if dry_run:
                        answer = ecs.describe_container_instances(cluster=cluster, containerInstances=list(part))
                    else:
                        answer = ecs.update_container_instances_state(cluster=cluster, containerInstances=list(part),
                                                                      status="DRAINING")
                except _CALL_ERRORS as exc:
                    # Which instances these were is unknown without the answer: fail the chunk's (the retry
                    # lists again and finds only those still ACTIVE).
                    results.update(_failure(name, [i for i in chunk if i not in results], exc))
                    break
                for ci in answer.get("containerInstances", []):
                    owner = ci.get("ec2InstanceId")
                    if owner in drained:
                        drained[owner].append((cluster, ci["containerInstanceArn"]))
                        if dry_run:
                            log.info("would have set %s in %s to DRAINING", ci["containerInstanceArn"], cluster)
    verb = "would have set" if dry_run else "set"
    for i in ids:
        if i in results:
            continue
        if drained[i]:
            results[i] = ActionResult(name, WOULD if dry_run else DONE,
                                      f"{verb} {len(drained[i])} container instance(s) on {i} to DRAINING",
                                      {"container_instances": sorted(a for _, a in drained[i]),
                                       "clusters": sorted({c for c, _ in drained[i]})})
        else:
            results[i] = ActionResult(name, SKIPPED, f"{i} has no ACTIVE ECS container instance (none, or already DRAINING)",
                                      {"container_instances": []})
    return results


@dataclass(frozen=True)
class CheckpointRequest:
    """One instance to checkpoint. ``look_first``: a redelivered event (its claim was taken before),
    whose checkpoint may already have been sent: ListCommands for the instance is read first and a
    spotkit checkpoint requested at or after ``since`` (the notice's issue time, ISO-8601) counts."""

    instance_id: str
    event_id: str
    look_first: bool = False
    since: str = ""


def _already_checkpointed(ssm, req: CheckpointRequest) -> Optional[str]:
    from spotkit.runtime.notice import try_parse_time

    since = try_parse_time(req.since) if req.since else None
    for page in ssm.get_paginator("list_commands").paginate(InstanceId=req.instance_id):
        for cmd in page["Commands"]:
            comment = cmd.get("Comment") or ""
            if not comment.startswith(CHECKPOINT_COMMENT_PREFIX):
                continue
            if comment == checkpoint_comment(req.event_id):
                return cmd["CommandId"]
            at = cmd.get("RequestedDateTime")
            at = try_parse_time(at) if at is not None else None
            if since is not None and at is not None and at >= since:
                return cmd["CommandId"]
    return None


def send_checkpoints(ssm, requests: Sequence[CheckpointRequest], command: str, *, dry_run: bool,
                     document: str = DEFAULT_CHECKPOINT_DOCUMENT, timeout_seconds: int = 110) -> dict[str, ActionResult]:
    """``send_checkpoint`` for many instances: one SendCommand per 50 instances. Only a redelivered
    event's instance is looked up first (``look_first``): a first delivery was claimed exactly once in
    the journal, so nothing can have been sent for it."""
    name = "checkpoint"
    results: dict[str, ActionResult] = {}
    todo: list[str] = []
    for req in {r.instance_id: r for r in requests}.values():
        if req.look_first:
            try:
                cid = _already_checkpointed(ssm, req)
            except _CALL_ERRORS as exc:
                results.update(_failure(name, [req.instance_id], exc))
                continue
            if cid:
                results[req.instance_id] = ActionResult(name, SKIPPED, f"checkpoint already sent to {req.instance_id} ({cid})",
                                                        {"command_id": cid})
                continue
        todo.append(req.instance_id)
    by_instance = {r.instance_id: r.event_id for r in requests}
    for chunk in _chunks(sorted(todo), SEND_COMMAND_MAX_INSTANCES):
        if dry_run:
            for i in chunk:
                log.info("would have sent %r to %s with %s", command, i, document)
                results[i] = ActionResult(name, WOULD, f"would have sent the checkpoint command to {i}", {"command": command})
            continue
        comment = checkpoint_comment(by_instance[chunk[0]]) if len(chunk) == 1 else \
            f"{CHECKPOINT_COMMENT_PREFIX} batch of {len(chunk)}"[:100]
        try:
            sent = ssm.send_command(InstanceIds=list(chunk), DocumentName=document, Comment=comment,
                                    Parameters={"commands": [command]}, TimeoutSeconds=max(30, timeout_seconds))
        except _CALL_ERRORS as exc:
            results.update(_failure(name, chunk, exc))
            continue
        cid = sent["Command"]["CommandId"]
        for i in chunk:
            results[i] = ActionResult(name, DONE, f"sent the checkpoint command to {i} ({cid})",
                                      {"command_id": cid, "command": command, "batch": len(chunk)})
    return results
