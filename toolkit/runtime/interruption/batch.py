"""The one path every event takes: ``handle_events(handler, events)``; a single event is a batch of one.

``Handler.handle_batch(bodies)`` (every message of one receive), ``Handler.handle_body(body)`` and
``Handler.handle(event)`` all come here. One ``Outcome`` per event, every action journaled per event, a
transient failure releases that event for its message's redelivery; the AWS work is shared by the batch
(the batched steps of ``actions``):

1. parse every body (``Handler.parse``): a valid event that needs nothing is ``ignored``, a malformed one
   ``dropped`` with its reason journaled (its message is deleted), one a parser bug fails is kept alone
   for retry; the others go on;
2. the same event twice in the batch is claimed once; the copies share its outcome (``duplicate``);
3. claim each event (one conditional write each; ``claim_info`` answers attempts and the current
   status in that write, nothing is read twice);
4. ``Handler.decide`` (one DescribeInstances for the batch, ``scope.py``) decides which are spotkit's
   (others are ``ignored``; an event from another account or region is ``dropped``); a lifecycle action's
   deadline comes from its hook's heartbeat timeout (``Handler.with_hook_deadline``);
5. act: deregister, ECS DRAINING and checkpoint for all of them at once (``actions.drain``); start a
   replacement (opt-in, rebalance); for lifecycle actions wait until drained, then complete each; a
   capacity event (a group's launch failure, an ECS placement failure, the fallback check) gets
   ``capacity.act_on``;
6. settle: the actions and the finish of every event written together (``settle_many``). If the batch
   failed as a whole on something unexpected, each event is then handled alone, so only the one that
   causes it stays failed.

Discovery (target groups, clusters) is cached for ``DISCOVERY_TTL_SECONDS`` per handler.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Optional, Sequence

from spotkit.runtime.interruption import actions as act
from spotkit.runtime.interruption import capacity
from spotkit.runtime.interruption import events as ev
from spotkit.runtime.interruption import store as st
from spotkit.runtime.interruption.events import InterruptionEvent, RetryEvent
from spotkit.runtime.interruption.inventory import Discovery
from spotkit.runtime.interruption.handler import (
    ACTED, DROPPED, DUPLICATE, FAILED, IGNORED, IN_PROGRESS, RETRY, Handler, Outcome)

log = logging.getLogger("spotkit.interruption")

# Target groups and clusters change on a deploy, not during a wave: listed once per 5 minutes.
DISCOVERY_TTL_SECONDS = 300.0

_DISCOVERY_LOCK = threading.Lock()


def discovery_for(handler: Handler) -> Discovery:
    """The handler's discovery cache (made on first use; ``settings.clusters`` fixes the clusters)."""
    found = getattr(handler, "_wave_discovery", None)
    if found is None:
        with _DISCOVERY_LOCK:
            found = getattr(handler, "_wave_discovery", None)
            if found is None:
                found = Discovery(DISCOVERY_TTL_SECONDS, clusters=handler.settings.clusters)
                handler._wave_discovery = found
    return found


class _Item:
    """One claimed event of the batch and what happened to it."""

    def __init__(self, event: InterruptionEvent, out: Outcome, attempts: int):
        self.event = event
        self.out = out
        self.attempts = attempts
        self.claimed_at = time.time()
        self.settled_status: Optional[str] = None  # the journal status once decided

    def add(self, *results: act.ActionResult) -> None:
        self.out.actions.extend(results)

    def settle(self, status: str, reason: str, journal: str) -> None:
        self.out.status, self.out.reason, self.settled_status = status, reason, journal


def handle_batch(handler: Handler, bodies: Sequence, *, wait_budget_seconds: Optional[float] = None) -> list[list[Outcome]]:
    """One list of outcomes per body, in the order of ``bodies``."""
    parsed = [handler.parse(body) for body in bodies]
    outs = iter(handle_events(handler, [e for events, settled in parsed if settled is None for e in events],
                              wait_budget_seconds=wait_budget_seconds))
    return [[settled] if settled is not None else [next(outs) for _ in events] for events, settled in parsed]


def handle_events(handler: Handler, events: Sequence[InterruptionEvent], *,
                  wait_budget_seconds: Optional[float] = None) -> list[Outcome]:
    """One outcome per event, in the order of ``events``."""
    outs: list[Outcome] = []
    first: dict[str, Outcome] = {}
    copies: list[tuple[Outcome, str]] = []
    unique: list[InterruptionEvent] = []
    for e in events:
        out = Outcome(status=ACTED, event_id=e.event_id, kind=e.kind, instance_id=e.instance_id)
        if e.event_id in first:
            copies.append((out, e.event_id))
        else:
            first[e.event_id] = out
            unique.append(e)
        outs.append(out)

    items = _claim(handler, unique, first)
    if items:
        whole_failed = False
        try:
            _act(handler, items, wait_budget_seconds)
        except RetryEvent as exc:  # AWS cannot be asked now: every event of the batch retries
            for it in items:
                if it.settled_status is None:
                    it.settle(RETRY, str(exc), st.FAILED)
        except Exception as exc:  # a bug or an unexpected AWS answer: release every claim, then each alone
            log.exception("handling a batch of %d events failed", len(items))
            whole_failed = True
            for it in items:
                if it.settled_status is None:
                    it.settle(RETRY, f"{type(exc).__name__}: {exc}", st.FAILED)
        _settle(handler, items)
        if whole_failed and len(items) > 1:
            _one_by_one(handler, items, wait_budget_seconds)

    for out, eid in copies:
        original = first[eid]
        out.group = original.group
        if original.delete_message:
            out.status, out.reason = DUPLICATE, f"{eid} is handled by an earlier message of this batch"
        else:
            out.status, out.reason = original.status, original.reason
    return outs


def _one_by_one(handler: Handler, items: list[_Item], wait_budget: Optional[float]) -> None:
    """The batch failed as a whole (a bug or an answer nothing expected, before any action): its claims are
    released; each event is now handled alone (a batch of one), so only the event that causes the failure
    stays failed (retried, then the dead-letter queue) and its batch-mates are acted on."""
    for it in items:
        if it.out.status != RETRY or it.out.actions:
            continue
        [alone] = handle_events(handler, [it.event], wait_budget_seconds=wait_budget)
        it.out.status, it.out.reason, it.out.group, it.out.actions = alone.status, alone.reason, alone.group, alone.actions


def _claim(handler: Handler, events: Sequence[InterruptionEvent], outs: dict[str, Outcome]) -> list[_Item]:
    store, lease = handler.store, handler.settings.lease_seconds
    claim_info = getattr(store, "claim_info", None)
    items = []
    for e in events:
        out = outs[e.event_id]
        try:
            if claim_info is not None:
                answer, attempts = claim_info(e, lease_seconds=lease)
            else:  # a store without it: attempts unknown, so look before sending a checkpoint
                answer, attempts = store.claim(e, lease_seconds=lease), 2
        except Exception as exc:  # the journal is unreachable: nothing was claimed, let the message retry
            log.warning("claiming %s failed: %s", e.event_id, exc)
            out.status, out.reason = RETRY, f"claiming {e.event_id}: {exc}"
            continue
        if answer != st.NEW:
            out.status = DUPLICATE if answer == st.DUPLICATE else IN_PROGRESS
            out.reason = (f"{e.event_id} is "
                          f"{'already handled' if answer == st.DUPLICATE else 'being handled by another worker'}")
            continue
        items.append(_Item(e, out, attempts))
    return items


def _decide(handler: Handler, items: list[_Item]) -> list[_Item]:
    """The items to act on; the others settled (ignored, dropped) with the reason."""
    verdicts = handler.decide([it.event for it in items])  # the one decision: toolkit/runtime/interruption/scope.py
    live: list[_Item] = []
    for it in items:
        verdict = verdicts[it.event.event_id]
        it.out.group = verdict.group
        if not verdict.act:
            dropped = verdict.status == DROPPED
            it.settle(DROPPED if dropped else IGNORED, verdict.reason, st.DROPPED if dropped else st.IGNORED)
        elif it.event.kind not in ev.KINDS:
            it.settle(DROPPED, f"no actions for kind {it.event.kind!r}", st.DROPPED)
        else:
            it.event = handler.with_hook_deadline(it.event)
            live.append(it)
    return live


def _plan(handler: Handler, it: _Item) -> act.DrainRequest:
    """What an instance event asks for: deregister, ECS DRAINING, checkpoint."""
    s, e = handler.settings, it.event
    if e.kind == ev.REBALANCE_RECOMMENDATION:
        steps = (s.drain_on_rebalance, s.drain_on_rebalance, bool(s.checkpoint_command) and s.checkpoint_on_rebalance)
    elif e.kind == ev.STATE_CHANGE:  # too late to checkpoint
        steps = (True, e.action in ("stopping", "shutting-down"), False)
    else:  # spot and capacity-reservation interruptions, scheduled changes, terminate lifecycle actions
        steps = (True, True, bool(s.checkpoint_command))
    return act.DrainRequest(e.instance_id, e.event_id, *steps, look_first=it.attempts != 1, since=e.issued_at)


def _act(handler: Handler, items: list[_Item], wait_budget: Optional[float]) -> None:
    s, clients = handler.settings, handler.clients
    live = _decide(handler, items)
    for it in [it for it in live if it.event.kind in ev.CAPACITY_KINDS]:
        _per_event(it, lambda it=it: capacity.act_on(handler, it.event, it.out.group, it.add))
    live = [it for it in live if it.event.kind not in ev.CAPACITY_KINDS]

    plans = {id(it): _plan(handler, it) for it in live}
    timeout = 110
    if live:
        now = handler._now()
        timeout = max(30, min(3600, int(max(it.event.seconds_left(now) for it in live))))
    drained = act.drain(clients, list(plans.values()), dry_run=s.dry_run, discovery=discovery_for(handler),
                        checkpoint_command=s.checkpoint_command, checkpoint_timeout_seconds=timeout)
    for it in live:
        plan, done = plans[id(it)], drained[it.event.instance_id]
        it.add(*(done[name] for name, wanted in (("deregister-targets", plan.deregister), ("ecs-drain", plan.ecs),
                                                 ("checkpoint", plan.checkpoint)) if wanted and name in done))

    rebalance = [it for it in live if it.event.kind == ev.REBALANCE_RECOMMENDATION and it.out.group]
    if rebalance and s.start_replacement_on_rebalance:
        for it, result in zip(rebalance, act.start_replacements(clients.autoscaling, clients.ec2, [
                (it.event.instance_id, it.out.group, it.event.event_id) for it in rebalance], dry_run=s.dry_run)):
            it.add(result)

    lifecycle = [it for it in live if it.event.kind == ev.LIFECYCLE_TERMINATE]
    if lifecycle:
        _wait_drained(handler, lifecycle, wait_budget)
        for it, result in zip(lifecycle, act.complete_lifecycle_actions(clients.autoscaling, [
                (it.event.instance_id, it.event.lifecycle) for it in lifecycle], dry_run=s.dry_run,
                result=s.lifecycle_result)):
            it.add(result)

    for it in items:
        if it.settled_status is None:
            _outcome(it)


def _outcome(it: _Item) -> None:
    """Acted; or failed (journaled failed and kept: the redelivery acts again, every step is idempotent),
    as ``retry`` when a redelivery may fix it."""
    retry = [a for a in it.out.actions if a.status == act.FAILED and a.detail.get("retry")]
    failed = [a for a in it.out.actions if a.status == act.FAILED]
    if retry:
        it.settle(RETRY, "; ".join(a.message for a in retry), st.FAILED)
    elif failed:
        it.settle(FAILED, "; ".join(a.message for a in failed), st.FAILED)
        log.warning("failed %s %s (group %s), kept for retry: %s", it.event.kind, it.event.instance_id,
                    it.out.group or "-", it.out.reason)
    else:
        it.settle(ACTED, "", st.DONE)


def _per_event(it: _Item, step) -> None:
    """A step of one event alone: its failure (a transient one, or a bug) fails that event only."""
    try:
        step()
    except RetryEvent as exc:
        it.settle(RETRY, str(exc), st.FAILED)
    except Exception as exc:  # noqa: BLE001 - a bug or an unexpected AWS answer: this event retries (then the DLQ)
        log.exception("handling %s failed", it.event.event_id)
        it.settle(RETRY, f"{type(exc).__name__}: {exc}", st.FAILED)


def _wait_drained(handler: Handler, items: list[_Item], wait_budget: Optional[float]) -> None:
    """Poll the lifecycle events of the batch not yet drained until each is drained or reaches its
    deadline (minus the margin) or the caller's budget."""
    s, clients = handler.settings, handler.clients
    started = time.monotonic()
    pending = {id(it): it for it in items}
    polls = 0
    while pending:
        polls += 1
        for key, it in list(pending.items()):
            iid = it.event.instance_id
            if act.is_drained(clients, iid, it.out.actions, dry_run=s.dry_run, clusters=list(s.clusters) or None):
                it.add(act.ActionResult("wait-drained", act.DONE, f"{iid} drained", {"polls": polls}))
                del pending[key]
                continue
            left = it.event.seconds_left(handler._now()) - s.deadline_margin_seconds
            if wait_budget is not None:
                left = min(left, wait_budget - (time.monotonic() - started))
            if left <= 0:
                it.add(act.ActionResult("wait-drained", act.SKIPPED,
                                        f"{iid} not drained before the deadline; completing anyway", {"polls": polls}))
                del pending[key]
        if pending:
            handler._sleep(s.drain_poll_seconds)


def _settle(handler: Handler, items: list[_Item]) -> None:
    store = handler.store
    rows = [(it.event, it.attempts, it.claimed_at, it.settled_status, it.out.reason,
             [(a.name, a.status, {"message": a.message, **a.detail}) for a in it.out.actions], it.out.group)
            for it in items]
    try:
        settle_many = getattr(store, "settle_many", None)
        if settle_many is not None:
            settle_many(rows)
        else:
            for event, _, _, status, reason, actions, _group in rows:
                for name, a_status, detail in actions:
                    store.record(event.event_id, name, a_status, **detail)
                store.finish(event.event_id, status, reason)
    except Exception as exc:  # journal down: the claims hold until their lease ends; the redelivery redoes (idempotent)
        log.warning("journaling a batch of %d events failed: %s", len(items), exc)
        for it in items:
            if it.out.delete_message:
                it.out.status, it.out.reason = RETRY, f"journal: {exc}"
