"""``spotkit interrupt``: interrupt some of a group's instances on purpose, to rehearse the whole path.

Two targets, one result (``InterruptResult``: what was interrupted, what the handler did with each
instance, what replaced them):

- ``run_fis`` (AWS): the stack synthesizes one AWS FIS experiment template per group (tag
  ``spotkit:group``; ``spotkit.constructs.interruption_events``). For the chosen instances a one-off copy of it is
  made that targets exactly them (``resourceArns``, selection ``ALL``; same action, notice, role and stop
  condition, tagged ``spotkit:interrupt=one-off``), started, followed to its end (bounded polls, injected
  sleep), then deleted. AWS sends the spot interruption warnings itself; the deployed handler drains.
- ``fire_drill`` (local): the same EventBridge-shaped ``EC2 Spot Instance Interruption Warning`` for each
  chosen instance is put on the stack's queue in the emulator, and the handler consumes the queue until
  it is empty: the event path from the queue to the journal, for real, against the emulator.

The domain neither prints nor imports click; clients, the clock and the sleep are injected.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Optional

from spotkit.runtime import notice
from spotkit.runtime.interruption import events
from spotkit.errors import ToolkitError
from spotkit.runtime.notice import TAG_INTERRUPT

SPOT_ACTION = "aws:ec2:send-spot-instance-interruptions"
ONE_OFF_TAG = TAG_INTERRUPT
TERMINAL = ("completed", "stopped", "failed", "cancelled")


@dataclass
class InterruptResult:
    group: str
    target: str
    dry_run: bool
    interrupted: list[str]
    experiment_id: str = ""
    experiment_state: str = ""
    experiment_reason: str = ""
    handled: dict[str, str] = field(default_factory=dict)   # instance -> journal status (done, failed...)
    actions: dict[str, dict] = field(default_factory=dict)  # instance -> {action: status}
    replaced_by: list[str] = field(default_factory=list)
    would: list[str] = field(default_factory=list)           # dry run: what would have been done


def choose(instance_ids: list[str], *, count: Optional[int] = None, percent: Optional[int] = None,
           group: str = "GROUP") -> list[str]:
    """The instances to interrupt: ``count`` of them, or ``percent`` (rounded up), default one; in id order.
    ``group`` (the group's name) goes into the hints, so they run when pasted."""
    ids = sorted(instance_ids)
    if count is not None and percent is not None:
        raise ToolkitError("give --count or --percent, not both", hint=f"spotkit interrupt --group {group} --count 1")
    n = count if count is not None else (math.ceil(len(ids) * percent / 100) if percent is not None else 1)
    if n < 1:
        raise ToolkitError(f"nothing to interrupt: --count/--percent selects {n} instance(s)",
                           hint="use --count 1 or more, or --percent 1 to 100")
    if not ids:
        raise ToolkitError("the group has no running instance to interrupt",
                           hint=f"spotkit status --group {group}")
    if n > len(ids):
        raise ToolkitError(f"--count {n} is more than the group's {len(ids)} running instance(s)",
                           hint=f"spotkit interrupt --group {group} --count {len(ids)}")
    return ids[:n]


def running_instances(ec2, group: str) -> list[str]:
    """Running instances tagged with the group (one paginated, filtered call)."""
    from spotkit.runbooks import aws_calls as aws

    return sorted(i["InstanceId"] for i in aws.group_instances(ec2, group, states=("running",)))


def asg_instances(autoscaling, group: str) -> set[str]:
    groups = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[group])["AutoScalingGroups"]
    return {i["InstanceId"] for g in groups for i in g.get("Instances", [])
            if i.get("LifecycleState") not in ("Terminating", "Terminated", "Terminating:Wait", "Terminating:Proceed")}


# --- the local fire drill -----------------------------------------------------------------------

def spot_warning(instance_id: str, *, region: str, account: str, at: datetime) -> dict:
    """An ``EC2 Spot Instance Interruption Warning`` as EventBridge delivers it to the queue."""
    return {"version": "0", "id": str(uuid.uuid4()), "detail-type": events.SPOT_WARNING_DETAIL_TYPE,
            "source": "aws.ec2", "account": account, "time": notice.format_time(at), "region": region,
            "resources": [f"arn:aws:ec2:{region}:{account}:instance/{instance_id}"],
            "detail": {"instance-id": instance_id, "instance-action": "terminate"}}


def journal_outcomes(store, instance_ids: list[str], result: InterruptResult, kinds=(notice.SPOT_INTERRUPTION,)) -> None:
    """Fill ``handled`` and ``actions`` from the journal: the newest event of each instance."""
    wanted = set(instance_ids)
    for e in sorted(store.events(), key=lambda e: str(e.get("time", ""))):
        if e.get("instance_id") in wanted and e.get("kind") in kinds:
            result.handled[e["instance_id"]] = e.get("status", "")
            result.actions[e["instance_id"]] = {a["name"]: a["status"] for a in store.actions(e["event_id"])}


def fire_drill(sqs, queue_url: str, consume: Callable[[], object], store, group: str, instance_ids: list[str], *,
               region: str, account: str = "123456789012", dry_run: bool = False,
               now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> InterruptResult:
    """Put a spot warning for each instance on ``queue_url``, then ``consume()`` the queue (the handler)."""
    result = InterruptResult(group, "local", dry_run, list(instance_ids))
    bodies = [spot_warning(i, region=region, account=account, at=now()) for i in instance_ids]
    if dry_run:
        result.would = [f"would put a spot interruption warning for {i} on {queue_url}" for i in instance_ids]
        return result
    for start in range(0, len(bodies), 10):
        part = bodies[start:start + 10]
        sent = sqs.send_message_batch(QueueUrl=queue_url, Entries=[
            {"Id": str(n), "MessageBody": json.dumps(b)} for n, b in enumerate(part)])
        if sent.get("Failed"):
            raise ToolkitError(f"the queue refused {len(sent['Failed'])} warning(s): {sent['Failed'][0].get('Message')}",
                               hint="check --queue-url (the stack's interruption_queue_url output)")
    consume()
    journal_outcomes(store, instance_ids, result)
    return result


# --- AWS FIS ------------------------------------------------------------------------------------

def find_template(fis, group: str) -> dict:
    """The stack's FIS experiment template for ``group`` (tag ``spotkit:group``; one-off copies left out)."""
    found = []
    kwargs: dict = {}
    while True:
        page = fis.list_experiment_templates(**kwargs)
        for t in page.get("experimentTemplates", []):
            tags = t.get("tags") or {}
            if tags.get(notice.TAG_GROUP) == group and ONE_OFF_TAG not in tags:
                found.append(t)
        if not page.get("nextToken"):
            break
        kwargs["nextToken"] = page["nextToken"]
    if not found:
        raise ToolkitError(f"no FIS experiment template for group {group!r} (tag {notice.TAG_GROUP}={group})",
                           hint="deploy the stack with interruptions.create_fis_templates on (the default), or use "
                                f"--target local for a fire drill: spotkit interrupt --group {group} --target local")
    return fis.get_experiment_template(id=sorted(found, key=lambda t: t["id"])[0]["id"])["experimentTemplate"]


def one_off_template(template: dict, group: str, instance_arns: list[str]) -> dict:
    """CreateExperimentTemplate arguments: the stack's template aimed at exactly these instances."""
    actions = {}
    target_name = "chosen-instances"
    for name, a in (template.get("actions") or {}).items():
        if a.get("actionId") != SPOT_ACTION:
            continue
        actions[name] = {"actionId": SPOT_ACTION, "description": a.get("description", "spotkit interrupt"),
                         "parameters": a.get("parameters") or {"durationBeforeInterruption": "PT2M"},
                         "targets": {"SpotInstances": target_name}}
    if not actions:
        raise ToolkitError(f"the FIS template {template.get('id')} of {group} has no {SPOT_ACTION} action",
                           hint="re-deploy the stack: its template sends spot interruptions")
    return {"clientToken": str(uuid.uuid4()), "description": f"spotkit interrupt {group}: {len(instance_arns)} instance(s)",
            "roleArn": template["roleArn"], "actions": actions,
            "targets": {target_name: {"resourceType": "aws:ec2:spot-instance", "resourceArns": instance_arns,
                                      "selectionMode": "ALL"}},
            "stopConditions": template.get("stopConditions") or [{"source": "none"}],
            "tags": {notice.TAG_GROUP: group, ONE_OFF_TAG: "one-off"}}


def run_fis(fis, ec2, autoscaling, group: str, instance_ids: list[str], *, dry_run: bool = False, store=None,
            poll_seconds: float = 10.0, max_polls: int = 90, sleep: Callable[[float], None] = time.sleep,
            journal_polls: int = 30) -> InterruptResult:
    """Start the group's FIS experiment for exactly these instances and follow it to its end."""
    template = find_template(fis, group)
    role = template["roleArn"]  # arn:<partition>:iam::<account>:role/...
    partition, account = role.split(":")[1], role.split(":")[4]
    region = fis.meta.region_name
    arns = [f"arn:{partition}:ec2:{region}:{account}:instance/{i}" for i in instance_ids]
    result = InterruptResult(group, "aws", dry_run, list(instance_ids))
    if dry_run:
        result.would = [f"would start FIS template {template['id']} (copy) against {', '.join(instance_ids)}"]
        return result
    before = asg_instances(autoscaling, group)
    created = fis.create_experiment_template(**one_off_template(template, group, arns))["experimentTemplate"]
    try:
        exp = fis.start_experiment(clientToken=str(uuid.uuid4()), experimentTemplateId=created["id"],
                                   tags={notice.TAG_GROUP: group})["experiment"]
        result.experiment_id = exp["id"]
        for _ in range(max_polls):
            exp = fis.get_experiment(id=exp["id"])["experiment"]
            if exp["state"]["status"] in TERMINAL:
                break
            sleep(poll_seconds)
        result.experiment_state = exp["state"]["status"]
        result.experiment_reason = exp["state"].get("reason", "")
    finally:
        fis.delete_experiment_template(id=created["id"])
    if result.experiment_state not in TERMINAL:
        raise ToolkitError(f"FIS experiment {result.experiment_id} still {result.experiment_state} after "
                           f"{max_polls} polls", hint=f"follow it with 'aws fis get-experiment --id {result.experiment_id}'")
    if store is not None:  # the deployed handler journals what it did; wait (bounded) until it has
        for _ in range(journal_polls):
            journal_outcomes(store, instance_ids, result)
            if all(result.handled.get(i) in ("done", "failed", "ignored") for i in instance_ids):
                break
            sleep(poll_seconds)
    result.replaced_by = sorted(asg_instances(autoscaling, group) - before)
    return result
