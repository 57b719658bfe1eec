"""``recover drain``: the interruption handler's drain, by hand.

This runbook owns no drain logic: it calls ``spotkit.runtime.interruption.actions.drain`` (deregister from target
groups, ECS DRAINING, optional checkpoint) and ``complete_lifecycle_actions`` with a batch of one, the same
functions the interruption handler runs, and journals what they did.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from botocore.exceptions import ClientError

from spotkit.errors import ToolkitError
from spotkit.runtime.notice import DRAIN_HOOK_NAME
from spotkit.runbooks import aws_calls as aws
from spotkit.runbooks.base import Action, RunContext, Runbook, register



@dataclass
class DrainRunResult:
    instance_id: str
    group: str | None
    dry_run: bool
    steps: list[dict] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)

    @property
    def failed(self) -> list[dict]:
        return [s for s in self.steps if s["status"] == "failed"]


def lifecycle_token_from_journal(path: str | Path | None, instance_id: str) -> str | None:
    """The lifecycle action token the interruption handler journaled for this instance, if any."""
    if not path or not Path(path).is_file():
        return None
    from spotkit.runtime.interruption.store import LocalFileStore

    events = LocalFileStore(path).all_events()
    tokens = [(e.get("claimed_at", 0), (e.get("event") or {}).get("lifecycle") or {}) for e in events.values()
              if e.get("instance_id") == instance_id]
    tokens = [(t, lc.get("token")) for t, lc in tokens if lc.get("token")]
    return max(tokens)[1] if tokens else None


@register("drain")
class DrainInstance(Runbook):
    """Drain one instance by hand, as the interruption handler would.

    1. Read the instance (its state and Auto Scaling group, from the ``aws:autoscaling:groupName`` tag).
    2. Deregister it from every ELB target group it is in, then set its ECS container instance to
       DRAINING (``spotkit.runtime.interruption.actions.drain``; each step looks before it acts). Each target
       group is asked about this instance alone (on the group's port), never read whole.
    3. Complete the group's termination lifecycle action (hook ``spotkit-drain``) with CONTINUE, with the
       token given or the one the interruption journal holds for the instance.
    4. Journal every step's outcome.
    """

    def __init__(self, clients, ctx: RunContext | None = None):
        """``clients``: a ``spotkit.runtime.interruption.actions.Clients`` (ec2, elbv2, ecs, autoscaling, ssm)."""
        super().__init__(ctx)
        self.clients = clients

    def run(self, instance_id: str, *, token: str | None = None, hook: str = DRAIN_HOOK_NAME,
            complete_lifecycle: bool = True, checkpoint_command: str | None = None) -> DrainRunResult:
        from spotkit.runtime.interruption import actions
        from spotkit.runtime.interruption.events import LifecycleAction

        try:
            reservations = self.clients.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
        except ClientError as exc:
            raise ToolkitError(f"instance {instance_id} not found: {exc.response['Error'].get('Message', exc)}",
                               hint="check the instance id (spotkit status lists each group's instances' counts)") from exc
        inst = reservations[0]["Instances"][0]
        # The Auto Scaling group: AWS's own tag, else spotkit's (a spotkit group is named after it).
        group = aws.tags_of(inst).get(aws.ASG_NAME_TAG) or aws.tags_of(inst).get(aws.GROUP_TAG)
        result = DrainRunResult(instance_id, group, self.ctx.dry_run, actions=self.actions)
        journal = self.journal(instance_id)
        request = actions.DrainRequest(instance_id, checkpoint=bool(checkpoint_command))
        outcomes = list(actions.drain(self.clients, [request], dry_run=self.ctx.dry_run, port_hints=False,
                                      checkpoint_command=checkpoint_command or "")[instance_id].values())
        self.step("drained")
        if complete_lifecycle and group:
            outcomes += actions.complete_lifecycle_actions(
                self.clients.autoscaling, [(instance_id, LifecycleAction(group, hook, token))], dry_run=self.ctx.dry_run)
        for a in outcomes:
            result.steps.append({"name": a.name, "status": a.status, "message": a.message})
            self.actions.append(Action(a.message, done=a.status == actions.DONE))
            if not self.ctx.dry_run:
                journal.finish(a.name, outcome=a.status, message=a.message)
        return result


def drain(clients, instance_id: str, ctx: RunContext | None = None, **kw) -> DrainRunResult:
    return DrainInstance(clients, ctx).run(instance_id, **kw)
