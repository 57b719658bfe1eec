"""FIS: ``StartExperiment`` / ``GetExperiment`` run ``aws:ec2:send-spot-instance-interruptions``.

moto 5.2 moves an experiment through pending -> initiating -> running -> completed as it is polled, and
lists resolved targets only for targets given by ARN; it never resolves targets by tag or filter, sends
no spot interruption warning and interrupts nothing. The emulator makes the
``aws:ec2:send-spot-instance-interruptions`` action do, in the emulator, what AWS does:

- at ``StartExperiment`` it resolves the action's target as FIS does (``resourceArns``, or
  ``resourceTags`` + ``filters`` ``State.Name``, then ``selectionMode`` ALL / COUNT(n) / PERCENT(n)), marks
  the chosen instances as the experiment's resolved targets (``ListExperimentResolvedTargets``), and puts an
  ``EC2 Spot Instance Interruption Warning`` (source ``aws.ec2``) for each on the default event bus, where
  moto's EventBridge delivers it to the rules' targets (the stack's SQS queue);
- when ``GetExperiment`` finds it ``completed``, the instances are interrupted: an instance of an Auto
  Scaling group is terminated there without lowering the desired capacity (the group launches its
  replacement), any other instance is terminated.

A target of resource type ``aws:ec2:spot-instance`` resolved by tags takes spot instances only
(``InstanceLifecycle`` spot: a spot RunInstances, or a mixed-instances group's spot launches, both patched
in ``patches/ec2.py`` and ``patches/autoscaling.py``).
"""

from __future__ import annotations

import json
import math
import re

from moto.autoscaling.models import autoscaling_backends
from moto.ec2.models import ec2_backends
from moto.events.models import events_backends
from moto.fis.models import FISBackend

from spotkit.rehearsal.local.patches import Patch, sets
from spotkit.runtime.interruption.events import SPOT_WARNING_DETAIL_TYPE

SPOT_ACTION = "aws:ec2:send-spot-instance-interruptions"
_start = FISBackend.start_experiment
_get = FISBackend.get_experiment
_PENDING = "spotkit_pending_interruptions"


def _resolve(ec2, target: dict) -> list[str]:
    arns = target.get("resourceArns") or []
    if arns:
        ids = [a.rsplit("/", 1)[-1] for a in arns]
        known = {i.id for r in ec2.reservations.values() for i in r.instances}
        return [i for i in ids if i in known]
    tags = target.get("resourceTags") or {}
    states = next((f["values"] for f in target.get("filters") or [] if f.get("path") == "State.Name"), None)
    spot_only = target.get("resourceType") == "aws:ec2:spot-instance"
    found = sorted(i.id for r in ec2.reservations.values() for i in r.instances
                   if all(ec2.tags.get(i.id, {}).get(k) == v for k, v in tags.items())
                   and (states is None or i.state in states)
                   and (not spot_only or getattr(i, "instance_lifecycle", None) == "spot"))
    mode = target.get("selectionMode", "ALL")
    m = re.match(r"^(COUNT|PERCENT)\((\d+)\)$", mode)
    if m and m.group(1) == "COUNT":
        return found[:int(m.group(2))]
    if m:
        return found[:math.ceil(len(found) * int(m.group(2)) / 100)]
    return found


def _start_experiment(self, client_token=None, experiment_template_id="", experiment_options=None, tags=None):
    out = _start(self, client_token, experiment_template_id, experiment_options, tags)
    exp = self.experiments[out["id"]]
    ec2 = ec2_backends[exp.account_id][exp.region_name]
    chosen: list[str] = []
    for action in exp.actions.values():
        if action.get("actionId") != SPOT_ACTION:
            continue
        name = (action.get("targets") or {}).get("SpotInstances")
        target = exp.targets.get(name) or {}
        ids = _resolve(ec2, target)
        target["resourceArns"] = [f"arn:aws:ec2:{exp.region_name}:{exp.account_id}:instance/{i}" for i in ids]
        chosen += ids
    if chosen:
        events = events_backends[exp.account_id][exp.region_name]
        for start in range(0, len(chosen), 10):
            events.put_events([{
                "Source": "aws.ec2", "DetailType": SPOT_WARNING_DETAIL_TYPE,
                "Resources": [f"arn:aws:ec2:{exp.region_name}:{exp.account_id}:instance/{i}"],
                "Detail": json.dumps({"instance-id": i, "instance-action": "terminate"})} for i in chosen[start:start + 10]])
    setattr(exp, _PENDING, chosen)
    return out


def _get_experiment(self, id: str):
    out = _get(self, id)
    exp = self.experiments[id]
    pending = getattr(exp, _PENDING, [])
    if out["state"]["status"] == "completed" and pending:
        setattr(exp, _PENDING, [])
        asg = autoscaling_backends[exp.account_id][exp.region_name]
        ec2 = ec2_backends[exp.account_id][exp.region_name]
        for iid in pending:
            in_group = any(s.instance.id == iid for g in asg.autoscaling_groups.values() for s in g.instance_states)
            if in_group:
                asg.terminate_instance(iid, should_decrement=False)
            else:
                ec2.terminate_instances([iid])
    return out


PATCHES = (
    Patch("fis", ("StartExperiment", "GetExperiment"),
          "runs aws:ec2:send-spot-instance-interruptions: resolves the targets (ARNs, or tags + State.Name filter "
          "on spot instances, "
          "then ALL / COUNT(n) / PERCENT(n)), puts an EC2 Spot Instance Interruption Warning for each on the default "
          "event bus, and interrupts the instances when the experiment completes (a group's instance without "
          "lowering the desired capacity)",
          "resolves no target by tag and sends no warning, so `spotkit interrupt --target aws` had nothing to follow",
          "https://docs.aws.amazon.com/fis/latest/userguide/fis-actions-reference.html",
          sets("moto.fis.models", "FISBackend", start_experiment=_start_experiment, get_experiment=_get_experiment)),
)
