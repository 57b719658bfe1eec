"""What a capacity event gets: the on-demand fallback of a group and its return to spot.

The handler (``Handler.capacity``) brings here the events about groups rather than instances, after its
one decision (``scope.py``) let them through:

- a launch failure of a group: spot capacity (``fallback.classify``) raises its on-demand base by the
  shortfall, once (``fallback.fall_back``); another cause, or the fallback off, is journaled and nothing
  changes;
- an ECS placement failure: the same for the cluster's groups (spotkit's, in ``--group``) whose spot
  launches failed in the hold time;
- the scheduled fallback check: every group in fallback is stepped back to spot (``fallback.return_check``).

Each decision is one ``ActionResult`` (``done``/``would`` when the base changed, else ``skipped``; a failed
AWS call ``failed``, with ``retry`` when a redelivery may fix it).
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Callable

from spotkit.runtime.interruption import actions as act
from spotkit.runtime.interruption import events as ev
from spotkit.runtime.interruption import fallback as fb
from spotkit.runtime.interruption.events import InterruptionEvent

if TYPE_CHECKING:
    from spotkit.runtime.interruption.handler import Handler

CHANGED = ("raised", "stepped-down", "restored")


def _decision(dry_run: bool, name: str, key: str, decide: Callable[[], fb.Decision]) -> act.ActionResult:
    try:
        d = decide()
    except act._CALL_ERRORS as exc:
        return act._failure(name, [key], exc)[key]
    status = (act.WOULD if dry_run else act.DONE) if d.action in CHANGED else act.SKIPPED
    return act.ActionResult(name, status, d.message, d.to_detail())


def act_on(handler: "Handler", event: InterruptionEvent, group: str, record: Callable[[act.ActionResult], None]) -> None:
    """Act on one capacity event of ``handler`` (its settings, clients and clock), ``record``-ing each action."""
    s, c = handler.settings, handler.clients
    policy, mutate, dry = s.fallback_policy, fb.mutator(s.dry_run), s.dry_run
    if event.kind == ev.LAUNCH_FAILURE:
        text = " ".join(str(event.detail.get(k, "")) for k in ("StatusMessage", "Cause", "Description"))
        cause = fb.classify(text)
        message = str(event.detail.get("StatusMessage") or event.detail.get("Cause") or "no reason given")
        if cause != fb.SPOT_CAPACITY or not s.fallback:
            why = (f"a launch of {group} failed for a {cause} reason, not spot capacity: {message}; nothing "
                   "changed (fix the cause)" if cause != fb.SPOT_CAPACITY else
                   f"spot capacity failure in {group} ({message}); the on-demand fallback is off: nothing changed")
            record(act.ActionResult("launch-failure", act.SKIPPED, why, {"group": group, "cause": cause}))
            return
        record(_decision(dry, "fallback", group, lambda: fb.fall_back(
            c.autoscaling, c.ec2, group, policy=policy, now=handler._now(), mutate=mutate, cause=message)))
    elif event.kind == ev.PLACEMENT_FAILURE:
        cluster = str(event.detail.get("clusterArn", ""))
        groups = handler.managed_groups(fb.cluster_groups(c.ecs, cluster))  # spotkit's, in --group: scope.py
        since = handler._now() - timedelta(minutes=max(policy.hold_minutes, 30))
        short = [g for g in groups if any(fb.is_capacity_activity(a) for a in fb.activities_since(c.autoscaling, g, since))]
        if not short or not s.fallback:
            why = ("the on-demand fallback is off" if short else
                   f"no spot capacity failure in the launches of {', '.join(groups) or 'its groups'}")
            record(act.ActionResult(
                "placement-failure", act.SKIPPED, f"ECS could not place a task in {cluster.rsplit('/', 1)[-1]} "
                f"({event.detail.get('reason', 'no reason given')}); {why}: nothing changed",
                {"cluster": cluster, "groups": groups}))
            return
        for g in short:
            record(_decision(dry, "fallback", g, lambda g=g: fb.fall_back(
                c.autoscaling, c.ec2, g, policy=policy, now=handler._now(), mutate=mutate,
                cause=f"ECS placement failure: {event.detail.get('reason', '')}")))
    else:  # FALLBACK_CHECK
        groups = handler.managed_groups(fb.groups_in_fallback(c.autoscaling, s.groups))
        if not groups:
            record(act.ActionResult("return-check", act.SKIPPED, "no group is in fallback", {}))
        for g in groups:
            record(_decision(dry, "return-check", g, lambda g=g: fb.return_check(
                c.autoscaling, c.ec2, g, policy=policy, now=handler._now(), mutate=mutate,
                region=event.region or "")))
