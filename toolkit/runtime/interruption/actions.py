"""The actions an interruption warning leads to, for a batch of instances: a single instance is a batch of one.

Each action is idempotent (it looks before it acts, so running it twice changes nothing the second time)
and takes ``dry_run``, honoured at the mutating call itself: it still reads, then logs "would have ..."
instead of writing. Each returns one ``ActionResult`` per instance, so the journal still records (and the
handler still retries) per event.

Public API (the handler's batch path and ``spotkit recover drain`` both use it):

- ``drain(clients, requests, *, dry_run, ...)``: take instances out of service, in this order:
  deregister them from the ELB target groups (first, so traffic leaves before the instance dies), set
  their ECS container instances to DRAINING, ask them to checkpoint through SSM Run Command.
- the steps: ``deregister_batch``, ``drain_ecs_batch``, ``send_checkpoints``, ``complete_lifecycle_actions``,
  ``start_replacements``; ``is_drained`` says whether what ``drain`` started for an instance has finished.

A wave (a pool, an AZ, a GPU family reclaimed at once) brings hundreds of notices within seconds. Acting
per notice costs O(targets) reads per notice (the whole target group, every container instance of the
cluster); the steps take every instance of one receive (up to 10 SQS messages; more for the Lambda's
batching window) and make one call per AWS resource instead:

   DescribeInstances        one per batch (instance-id filter, so an unknown id is no error)
   DescribeTargetHealth     one per target group per batch; DeregisterTargets one per group
   ListContainerInstances   one per cluster per batch (filter ec2InstanceId in [...], ACTIVE only);
                            UpdateContainerInstancesState for up to 10 at a time (the API's limit)
   SendCommand              one per 50 instances (the API's limit for InstanceIds)
   CompleteLifecycleAction, CreateTags + SetDesiredCapacity: one per instance (no batch call exists)

Errors: a failed call fails only the instances it was for (``status="failed"``, so the other steps and
instances go on); ``detail["retry"]`` is True when the failure is transient (throttling after the
client's own retries, a connection error): the handler then releases those events for the message's
redelivery (every step is idempotent).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

from botocore.exceptions import BotoCoreError, ClientError, ConnectionClosedError, EndpointConnectionError

from spotkit.runtime.interruption.events import LifecycleAction
from spotkit.runtime.interruption.inventory import Discovery, chunks, describe_groups_batch, describe_instances_batch
from spotkit.runtime.notice import TAG_REPLACEMENT_REQUESTED

log = logging.getLogger("spotkit.interruption")

DONE = "done"          # the call was made and changed something
SKIPPED = "skipped"    # nothing to do (already done, not applicable)
WOULD = "would"        # dry run: the call that would have changed something was not made
FAILED = "failed"      # the call failed (``detail["retry"]``: whether a redelivery may fix it)

RETRYABLE_CODES = frozenset({
    "Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException",
    "RequestThrottled", "RequestThrottledException", "ProvisionedThroughputExceededException",
    "ServiceUnavailable", "ServiceUnavailableException", "InternalError", "InternalFailure",
    "InternalServerError", "RequestTimeout", "RequestTimeoutException",
})
REPLACEMENT_TAG = TAG_REPLACEMENT_REQUESTED
DEFAULT_CHECKPOINT_DOCUMENT = "AWS-RunShellScript"
CHECKPOINT_COMMENT_PREFIX = "spotkit checkpoint"
UPDATE_CONTAINER_INSTANCES_MAX = 10
SEND_COMMAND_MAX_INSTANCES = 50
ECS_FILTER_MAX_IDS = 50


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


def _done(name: str, dry_run: bool, message: str, detail: dict) -> ActionResult:
    """The result of a change: made (``done``), or in a dry run not made (``would``, "would have ...")."""
    return ActionResult(name, WOULD if dry_run else DONE, f"would have {message}" if dry_run else message, detail)


def _code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


def _failure(name: str, ids: Sequence[str], exc: Exception) -> dict[str, ActionResult]:
    """Every instance ``ids`` names failed with ``exc``; ``retry`` says whether a redelivery may fix it."""
    if isinstance(exc, ClientError):
        code, retry = _code(exc), _code(exc) in RETRYABLE_CODES
    else:
        code, retry = type(exc).__name__, isinstance(exc, (EndpointConnectionError, ConnectionClosedError))
    return {i: ActionResult(name, FAILED, f"{name} for {i} failed: {exc}", {"error": code, "retry": retry})
            for i in ids}


_CALL_ERRORS = (ClientError, BotoCoreError)


# --- ELB target groups --------------------------------------------------------------------------

def batch_targets(instance_ids: Sequence[str], known_ports: Optional[dict] = None) -> list[dict]:
    """The ``Targets`` of a batch's DescribeTargetHealth: each instance by id alone (its registration on
    the group's port), and by id and port for every other port it is known to be registered on."""
    known_ports = known_ports or {}
    asked: list[dict] = []
    for i in instance_ids:
        asked.append({"Id": i})
        asked.extend({"Id": i, "Port": p} for p in sorted(known_ports.get(i, ())))
    return asked


def _live_targets(health: Sequence[dict], wanted: set) -> list[dict]:
    """The live (not draining, not unused) registrations of the ``wanted`` instances, each once: an id
    and a port asked for are one registration."""
    targets: dict[tuple, dict] = {}
    for h in health:
        t = h["Target"]
        if t["Id"] in wanted and h.get("TargetHealth", {}).get("State") not in ("draining", "unused"):
            targets.setdefault((t["Id"], t.get("Port")), {"Id": t["Id"], **({"Port": t["Port"]} if "Port" in t else {})})
    return list(targets.values())


def deregister_batch(elbv2, instance_ids: Sequence[str], target_group_arns: Sequence[str], *,
                     dry_run: bool, registrations: Optional[Callable[[str], dict]] = None) -> dict[str, ActionResult]:
    """Deregister the instances from every instance target group they are registered in (every port):
    per target group one DescribeTargetHealth naming the batch's targets (``Targets=``, so the answer is
    the batch's, not the whole group's) and one DeregisterTargets carrying their live registrations.

    ``registrations(arn)`` (``Discovery.registrations``) names the ports each instance was seen
    registered on, so that a registration on a port other than the group's is asked about too; without
    it, each instance is asked about on the group's port."""
    name = "deregister-targets"
    ids = sorted(set(instance_ids))
    results: dict[str, ActionResult] = {}
    found: dict[str, list[str]] = {i: [] for i in ids}
    for arn in target_group_arns:
        live = [i for i in ids if i not in results]
        if not live:
            break
        try:
            asked = batch_targets(live, registrations(arn) if registrations is not None else None)
            health = elbv2.describe_target_health(TargetGroupArn=arn, Targets=asked)["TargetHealthDescriptions"]
        except _CALL_ERRORS as exc:
            if not (isinstance(exc, ClientError) and _code(exc) == "TargetGroupNotFound"):  # else: deleted since listed
                results.update(_failure(name, live, exc))
            continue
        targets = _live_targets(health, set(live))
        if not targets:
            continue
        owners = sorted({t["Id"] for t in targets})
        if dry_run:
            log.info("would have deregistered %s from %s", ", ".join(owners), arn)
        else:
            try:
                elbv2.deregister_targets(TargetGroupArn=arn, Targets=targets)
            except _CALL_ERRORS as exc:
                results.update(_failure(name, owners, exc))
                continue
        for i in owners:
            found[i].append(arn)
    for i in ids:
        if i in results:
            continue
        results[i] = (_done(name, dry_run, f"deregistered {i} from {len(found[i])} target group(s)",
                            {"target_groups": sorted(found[i])}) if found[i] else
                      ActionResult(name, SKIPPED, f"{i} is in no target group (of {len(target_group_arns)})",
                                   {"target_groups": []}))
    return results


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

def drain_ecs_batch(ecs, instance_ids: Sequence[str], clusters: Sequence[str], *,
                    dry_run: bool) -> dict[str, ActionResult]:
    """Set the ECS container instances on the instances to DRAINING, so ECS moves their tasks elsewhere and
    places no new ones: per cluster one ListContainerInstances with ``filter="ec2InstanceId in [...]"`` and
    ``status=ACTIVE`` (what still has to be drained), then UpdateContainerInstancesState(DRAINING) for 10
    at a time; its answer names each one's instance. A dry run describes the listed ones instead
    (read-only) to know whose they are."""
    name = "ecs-drain"
    ids = sorted(set(instance_ids))
    results: dict[str, ActionResult] = {}
    drained: dict[str, list[tuple[str, str]]] = {i: [] for i in ids}  # instance -> [(cluster, arn)]
    for cluster in clusters:
        for chunk in chunks([i for i in ids if i not in results], ECS_FILTER_MAX_IDS):
            try:
                arns = _active_container_instances(ecs, cluster, chunk)
            except _CALL_ERRORS as exc:
                if not (isinstance(exc, ClientError) and _code(exc) == "ClusterNotFoundException"):  # else: deleted
                    results.update(_failure(name, chunk, exc))
                continue
            for part in chunks(arns, UPDATE_CONTAINER_INSTANCES_MAX):
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
                    if ci.get("ec2InstanceId") in drained:
                        drained[ci["ec2InstanceId"]].append((cluster, ci["containerInstanceArn"]))
                        if dry_run:
                            log.info("would have set %s in %s to DRAINING", ci["containerInstanceArn"], cluster)
    for i in ids:
        if i in results:
            continue
        results[i] = (_done(name, dry_run, f"set {len(drained[i])} container instance(s) on {i} to DRAINING",
                            {"container_instances": sorted(a for _, a in drained[i]),
                             "clusters": sorted({c for c, _ in drained[i]})}) if drained[i] else
                      ActionResult(name, SKIPPED, f"{i} has no ACTIVE ECS container instance (none, or already "
                                   "DRAINING)", {"container_instances": []}))
    return results


def _active_container_instances(ecs, cluster: str, instance_ids: Sequence[str]) -> list[str]:
    expression = "ec2InstanceId in [" + ", ".join(f"'{i}'" for i in instance_ids) + "]"
    return [a for page in ecs.get_paginator("list_container_instances").paginate(
        cluster=cluster, filter=expression, status="ACTIVE") for a in page["containerInstanceArns"]]


def ecs_drained(ecs, instance_id: str, clusters: Sequence[str]) -> bool:
    """True when no container instance on ``instance_id`` (in ``clusters``) still runs a task."""
    for cluster in clusters:
        arns = ecs.list_container_instances(cluster=cluster, filter=f"ec2InstanceId == {instance_id}")["containerInstanceArns"]
        if not arns:
            continue
        described = ecs.describe_container_instances(cluster=cluster, containerInstances=arns)["containerInstances"]
        # Match on the instance id ourselves: not every emulator applies the filter expression.
        if any(int(ci.get("runningTasksCount", 0)) for ci in described if ci.get("ec2InstanceId") == instance_id):
            return False
    return True


# --- SSM checkpoint -----------------------------------------------------------------------------

@dataclass(frozen=True)
class DrainRequest:
    """One instance to take out of service, and which steps it needs.

    The checkpoint is once per event: ``event_id`` names it in the command's comment (default
    ``manual:<instance>``). ``look_first``: ListCommands for the instance is read first, and a command
    naming this event, or a spotkit checkpoint requested at or after ``since`` (the notice's issue time,
    ISO-8601), counts as sent. The handler turns it off for a first delivery (its claim in the journal
    is the once-only guard; only a redelivered event's checkpoint may already have been sent)."""

    instance_id: str
    event_id: str = ""
    deregister: bool = True
    ecs: bool = True
    checkpoint: bool = True
    look_first: bool = True
    since: str = ""

    @property
    def checkpoint_id(self) -> str:
        return self.event_id or f"manual:{self.instance_id}"


def checkpoint_comment(event_id: str) -> str:
    return f"{CHECKPOINT_COMMENT_PREFIX} {event_id}"[:100]


def _already_checkpointed(ssm, req: DrainRequest) -> Optional[str]:
    from spotkit.runtime.notice import try_parse_time

    since = try_parse_time(req.since) if req.since else None
    for page in ssm.get_paginator("list_commands").paginate(InstanceId=req.instance_id):
        for cmd in page["Commands"]:
            comment = cmd.get("Comment") or ""
            if not comment.startswith(CHECKPOINT_COMMENT_PREFIX):
                continue
            if comment == checkpoint_comment(req.checkpoint_id):
                return cmd["CommandId"]
            at = cmd.get("RequestedDateTime")
            at = try_parse_time(at) if at is not None else None
            if since is not None and at is not None and at >= since:
                return cmd["CommandId"]
    return None


def send_checkpoints(ssm, requests: Sequence[DrainRequest], command: str, *, dry_run: bool,
                     document: str = DEFAULT_CHECKPOINT_DOCUMENT, timeout_seconds: int = 110) -> dict[str, ActionResult]:
    """Run the checkpoint hook on the instances with SSM Run Command: one SendCommand per 50 instances,
    after ListCommands for each request that must ``look_first``."""
    name = "checkpoint"
    results: dict[str, ActionResult] = {}
    by_instance = {r.instance_id: r for r in requests}
    for req in by_instance.values():
        if not req.look_first:
            continue
        try:
            cid = _already_checkpointed(ssm, req)
        except _CALL_ERRORS as exc:
            results.update(_failure(name, [req.instance_id], exc))
            continue
        if cid:
            results[req.instance_id] = ActionResult(name, SKIPPED, f"checkpoint already sent to {req.instance_id} ({cid})",
                                                    {"command_id": cid})
    for chunk in chunks(sorted(set(by_instance) - set(results)), SEND_COMMAND_MAX_INSTANCES):
        if dry_run:
            for i in chunk:
                log.info("would have sent %r to %s with %s", command, i, document)
                results[i] = ActionResult(name, WOULD, f"would have sent the checkpoint command to {i}", {"command": command})
            continue
        comment = checkpoint_comment(by_instance[chunk[0]].checkpoint_id) if len(chunk) == 1 else \
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


def checkpoint_finished(ssm, instance_id: str, command_id: str) -> bool:
    try:
        status = ssm.get_command_invocation(CommandId=command_id, InstanceId=instance_id)["Status"]
    except ClientError as exc:
        if _code(exc) == "InvocationDoesNotExist":
            return False
        raise
    return status not in ("Pending", "InProgress", "Delayed")


# --- Auto Scaling -------------------------------------------------------------------------------

def complete_lifecycle_actions(autoscaling, actions: Sequence[tuple[str, LifecycleAction]], *, dry_run: bool,
                               result: str = "CONTINUE") -> list[ActionResult]:
    """Tell Auto Scaling each ``(instance id, lifecycle action)`` may go: one result each, in order (one call
    each: Auto Scaling has no batch call). Completing an action that is no longer pending (already
    completed, or timed out) is not an error: it is reported as skipped."""
    name = "complete-lifecycle-action"
    out: list[ActionResult] = []
    for instance_id, lifecycle in actions:
        detail = {"group": lifecycle.group_name, "hook": lifecycle.hook_name}
        if dry_run:
            log.info("would have completed lifecycle action %s/%s for %s with %s",
                     lifecycle.group_name, lifecycle.hook_name, instance_id, result)
            out.append(_done(name, True, f"completed the lifecycle action for {instance_id}", {**detail, "result": result}))
            continue
        try:
            identity = {"LifecycleActionToken": lifecycle.token} if lifecycle.token else {}
            autoscaling.complete_lifecycle_action(
                AutoScalingGroupName=lifecycle.group_name, LifecycleHookName=lifecycle.hook_name,
                LifecycleActionResult=result, InstanceId=instance_id, **identity)
            out.append(ActionResult(name, DONE, f"completed the lifecycle action for {instance_id} with {result}",
                                    {**detail, "result": result}))
        except _CALL_ERRORS as exc:
            if isinstance(exc, ClientError) and _code(exc) == "ValidationError" and "No active Lifecycle Action" in str(exc):
                out.append(ActionResult(name, SKIPPED, f"no pending lifecycle action for {instance_id} (already "
                                        "completed or timed out)", detail))
            else:
                out.append(_failure(name, [instance_id], exc)[instance_id])
    return out


def start_replacements(autoscaling, ec2, wanted: Sequence[tuple[str, str, str]], *, dry_run: bool) -> list[ActionResult]:
    """For each ``(instance id, group, event id)``, raise the group's desired capacity by one so a
    replacement starts before the instance is taken: one result each, in order.

    Once per instance: the instance gets the tag ``spotkit:replacement-requested=<event id>`` first,
    and an instance that has it is skipped. Capped at the group's max_size. The extra unit stays until
    the group scales in (capacity rebalancing or your scaling policy), as with AWS's own rebalancing.
    One DescribeInstances and one DescribeAutoScalingGroups for the batch; CreateTags and
    SetDesiredCapacity per instance (raising from the group's capacity as this batch left it)."""
    name = "start-replacement"
    try:
        tags = {i: {t["Key"]: t["Value"] for t in inst.get("Tags", [])}
                for i, inst in describe_instances_batch(ec2, [i for i, _, _ in wanted]).items()}
        groups = describe_groups_batch(autoscaling, [g for _, g, _ in wanted])
    except _CALL_ERRORS as exc:
        failed = _failure(name, [i for i, _, _ in wanted], exc)
        return [failed[i] for i, _, _ in wanted]
    out: list[ActionResult] = []
    for instance_id, group_name, event_id in wanted:
        mine, group = tags.setdefault(instance_id, {}), groups.get(group_name)
        if REPLACEMENT_TAG in mine:
            out.append(ActionResult(name, SKIPPED, f"a replacement for {instance_id} was already requested",
                                    {"by_event": mine[REPLACEMENT_TAG]}))
        elif group is None:
            out.append(ActionResult(name, FAILED, f"group {group_name} does not exist", {"group": group_name}))
        elif group["DesiredCapacity"] >= group["MaxSize"]:
            out.append(ActionResult(name, SKIPPED, f"group {group_name} is at max_size ({group['MaxSize']}); no room "
                                    "for a replacement", {"group": group_name, "desired": group["DesiredCapacity"]}))
        elif dry_run:
            desired = group["DesiredCapacity"]
            log.info("would have raised %s desired capacity %d -> %d", group_name, desired, desired + 1)
            out.append(ActionResult(name, WOULD, f"would have raised {group_name} to {desired + 1}", {"group": group_name}))
        else:
            try:
                out.append(_replace(autoscaling, ec2, instance_id, group, event_id))
                mine[REPLACEMENT_TAG] = event_id
            except _CALL_ERRORS as exc:
                out.append(_failure(name, [instance_id], exc)[instance_id])
    return out


def _replace(autoscaling, ec2, instance_id: str, group: dict, event_id: str) -> ActionResult:
    name, desired = group["AutoScalingGroupName"], group["DesiredCapacity"]
    ec2.create_tags(Resources=[instance_id], Tags=[{"Key": REPLACEMENT_TAG, "Value": event_id[:255]}])
    autoscaling.set_desired_capacity(AutoScalingGroupName=name, DesiredCapacity=desired + 1, HonorCooldown=False)
    group["DesiredCapacity"] = desired + 1
    return ActionResult("start-replacement", DONE, f"raised {name} desired capacity {desired} -> {desired + 1}",
                        {"group": name, "desired": desired + 1})


# --- the composite the handler and the runbooks use -----------------------------------------------

def drain(clients: Clients, requests: Sequence[DrainRequest], *, dry_run: bool, discovery: Optional[Discovery] = None,
          checkpoint_command: str = "", port_hints: bool = True,
          checkpoint_timeout_seconds: int = 110) -> dict[str, dict[str, ActionResult]]:
    """Take the requested instances out of service: instance id -> step name -> result, the steps in this
    order: ELB targets (``deregister-targets``), ECS (``ecs-drain``), checkpoint (``checkpoint``; only with a
    ``checkpoint_command``), each only for the requests that ask for it.

    ``discovery`` lists the target groups and clusters (default: listed now, once). ``port_hints``: ask
    about every port an instance was seen registered on (``Discovery.registrations``, one whole-group read
    per group a minute); off, each instance is asked about on its group's port only, no group read whole."""
    out: dict[str, dict[str, ActionResult]] = {r.instance_id: {} for r in requests}
    discovery = discovery or Discovery()
    hints = (lambda arn: discovery.registrations(clients.elbv2, arn)) if port_hints else None
    steps = {  # step -> (whether a request wants it, the batched call for the ids that do)
        "deregister-targets": (lambda r: r.deregister, lambda ids: deregister_batch(
            clients.elbv2, ids, discovery.target_groups(clients.elbv2), dry_run=dry_run, registrations=hints)),
        "ecs-drain": (lambda r: r.ecs, lambda ids: drain_ecs_batch(
            clients.ecs, ids, discovery.clusters(clients.ecs), dry_run=dry_run)),
        "checkpoint": (lambda r: r.checkpoint and bool(checkpoint_command), lambda ids: send_checkpoints(
            clients.ssm, [r for r in requests if r.checkpoint], checkpoint_command, dry_run=dry_run,
            timeout_seconds=checkpoint_timeout_seconds)),
    }
    for name, (wanted, run) in steps.items():
        ids = sorted({r.instance_id for r in requests if wanted(r)})
        if not ids:
            continue
        try:
            results = run(ids)
        except _CALL_ERRORS as exc:  # listing the target groups or the clusters failed
            results = _failure(name, ids, exc)
        for i, result in results.items():
            out[i][name] = result
    return out


def is_drained(clients: Clients, instance_id: str, actions: Sequence[ActionResult], *, dry_run: bool,
               clusters: Optional[Sequence[str]] = None) -> bool:
    """Whether the work ``drain`` started for ``instance_id`` (its ``actions``) is over: no longer a target,
    no running ECS tasks, the checkpoint command finished. A dry run is drained at once (nothing was started)."""
    if dry_run:
        return True
    done = {a.name: a.detail for a in actions}
    dereg, ecs, cp = done.get("deregister-targets", {}), done.get("ecs-drain", {}), done.get("checkpoint", {})
    if dereg.get("target_groups") and not targets_drained(clients.elbv2, instance_id, dereg["target_groups"]):
        return False
    if ecs.get("container_instances") and not ecs_drained(clients.ecs, instance_id, clusters or ecs.get("clusters", [])):
        return False
    return not (cp.get("command_id") and not checkpoint_finished(clients.ssm, instance_id, cp["command_id"]))
