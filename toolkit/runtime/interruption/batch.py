"""The wave path: ``Handler.handle_batch(bodies)`` handles every message of one receive together.

Same decisions, same journal and same outcomes as ``Handler.handle`` (one ``Outcome`` per event, every
action journaled per event, a transient failure releases that event for its message's redelivery), but
the AWS work is shared by the batch (see the batch functions in ``actions``):

1. parse every body (``Handler.parse``): a valid event that needs nothing is ``ignored``, a malformed one
   ``dropped`` with its reason journaled (its message is deleted), one a parser bug fails is kept alone
   for retry; the others go on;
2. the same event twice in the batch is claimed once; the copies share its outcome (``duplicate``);
3. claim each event (one conditional write each; ``claim_info`` answers attempts and the current
   status in that write, nothing is read twice);
4. ``Handler.decide`` (one DescribeInstances for the batch, ``scope.py``) decides which are spotkit's
   (others are ``ignored``; an event from another account or region is ``dropped``); a lifecycle action's
   deadline comes from its hook's heartbeat timeout (``Handler.with_hook_deadline``);
5. deregister, ECS DRAINING and checkpoint for all of them with the batched calls; start a replacement
   (opt-in, rebalance) per instance; for lifecycle actions wait until drained, then complete each
   (Auto Scaling has no batch call for that);
6. settle: the actions and the finish of every event written together (``settle_many``). If the batch
   failed as a whole on something unexpected, each event is then handled alone, so only the one that
   causes it stays failed.

``Handler.handle_body`` is this path with a batch of one.

Discovery (target groups, clusters) is cached for ``DISCOVERY_TTL_SECONDS`` per handler.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Optional, Sequence

from spotkit.runtime.interruption import actions as act
from spotkit.runtime.interruption import events as ev
from spotkit.runtime.interruption import handler as hd
from spotkit.runtime.interruption import store as st
from spotkit.runtime.interruption.events import InterruptionEvent, RetryEvent
from spotkit.runtime.interruption.handler import ACTED, DROPPED, DUPLICATE, IGNORED, IN_PROGRESS, RETRY, Handler, Outcome

log = logging.getLogger("spotkit.interruption")

# An event whose action failed: kept for retry, journaled failed (``handler.FAILED`` where the handler
# has that outcome; RETRY, which keeps the message the same way, where it does not).
FAILED = getattr(hd, "FAILED", RETRY)

# Target groups and clusters change on a deploy, not during a wave: listed once per 5 minutes.
DISCOVERY_TTL_SECONDS = 300.0
DRAIN_KINDS = (ev.SPOT_INTERRUPTION, ev.CAPACITY_RESERVATION_INTERRUPTION, ev.SCHEDULED_CHANGE, ev.LIFECYCLE_TERMINATE)

_DISCOVERY_LOCK = threading.Lock()


def discovery_for(handler: Handler) -> act.Discovery:
    """The handler's discovery cache (made on first use; ``settings.clusters`` fixes the clusters)."""
    found = getattr(handler, "_wave_discovery", None)
    if found is None:
        with _DISCOVERY_LOCK:
            found = getattr(handler, "_wave_discovery", None)
            if found is None:
                found = act.Discovery(DISCOVERY_TTL_SECONDS, clusters=handler.settings.clusters)
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

    def add(self, result: act.ActionResult) -> None:
        self.out.actions.append(result)


def handle_batch(handler: Handler, bodies: Sequence, *, wait_budget_seconds: Optional[float] = None) -> list[list[Outcome]]:
    """One list of outcomes per body, in the order of ``bodies``."""
    results: list[list[Optional[Outcome]]] = []
    first: dict[str, Outcome] = {}
    copies: list[tuple[Outcome, str]] = []
    unique: list[InterruptionEvent] = []
    for body in bodies:
        events, settled = handler.parse(body)
        if settled is not None:  # ignored, dropped as unreadable, or (a parser bug) kept alone for retry
            results.append([settled])
            continue
        row = []
        for e in events:
            if e.kind in ev.CAPACITY_KINDS:
                # About a group, not an instance (capacity fallback, the return check): nothing to share with
                # the batch's instance calls; the per-event path claims, acts and journals it.
                row.append(handler.handle(e, wait_budget_seconds=wait_budget_seconds))
                continue
            out = Outcome(status=ACTED, event_id=e.event_id, kind=e.kind, instance_id=e.instance_id)
            if e.event_id in first:
                copies.append((out, e.event_id))
            else:
                first[e.event_id] = out
                unique.append(e)
            row.append(out)
        results.append(row)

    items = _claim(handler, unique, first)
    if items:
        transient = False
        try:
            _act(handler, items, wait_budget_seconds)
        except RetryEvent as exc:  # AWS cannot be asked now: every event of the batch retries
            transient = True
            for it in items:
                if it.settled_status is None:
                    it.out.status, it.out.reason, it.settled_status = RETRY, str(exc), st.FAILED
        except Exception as exc:  # a bug or an unexpected AWS answer: release every claim, then each alone
            log.exception("handling a batch of %d events failed", len(items))
            for it in items:
                if it.settled_status is None:
                    it.out.status, it.out.reason = RETRY, f"{type(exc).__name__}: {exc}"
                    it.settled_status = st.FAILED
        _settle(handler, items)
        if not transient and len(items) > 1 and any(it.out.status == RETRY and not it.out.actions for it in items):
            _one_by_one(handler, items, wait_budget_seconds)

    for out, eid in copies:
        original = first[eid]
        out.group = original.group
        if original.delete_message:
            out.status, out.reason = DUPLICATE, f"{eid} is handled by an earlier message of this batch"
        else:
            out.status, out.reason = original.status, original.reason
    return results  # type: ignore[return-value]


def _one_by_one(handler: Handler, items: list[_Item], wait_budget: Optional[float]) -> None:
    """The batch failed as a whole (a bug or an answer nothing expected, before any action): its claims are
    released; each event is now handled alone (a batch of one), so only the event that causes the failure
    stays failed (retried, then the dead-letter queue) and its batch-mates are acted on."""
    for it in items:
        if it.out.status != RETRY or it.out.actions:
            continue
        alone = handler.handle(it.event, wait_budget_seconds=wait_budget)
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


def _act(handler: Handler, items: list[_Item], wait_budget: Optional[float]) -> None:
    s, clients = handler.settings, handler.clients

    verdicts = handler.decide([it.event for it in items])  # the one decision: toolkit/runtime/interruption/scope.py
    live: list[_Item] = []
    for it in items:
        verdict = verdicts[it.event.event_id]
        it.out.group = verdict.group
        if not verdict.act:
            dropped = verdict.status == DROPPED
            it.out.status, it.out.reason = (DROPPED if dropped else IGNORED), verdict.reason
            it.settled_status = st.DROPPED if dropped else st.IGNORED
        elif it.event.kind not in ev.KINDS:
            it.out.status, it.out.reason, it.settled_status = DROPPED, f"no actions for kind {it.event.kind!r}", st.DROPPED
        else:
            it.event = handler.with_hook_deadline(it.event)
            live.append(it)

    # What each event asks for.
    plans: dict[int, tuple[bool, bool, bool]] = {}  # id(item) -> (deregister, ecs, checkpoint)
    has_command = bool(s.checkpoint_command)
    for it in live:
        kind = it.event.kind
        if kind in DRAIN_KINDS:
            plans[id(it)] = (True, True, has_command)
        elif kind == ev.REBALANCE_RECOMMENDATION:
            plans[id(it)] = (s.drain_on_rebalance, s.drain_on_rebalance, has_command and s.checkpoint_on_rebalance)
        else:  # STATE_CHANGE: too late to checkpoint
            plans[id(it)] = (True, it.event.action in ("stopping", "shutting-down"), False)

    dereg_ids = sorted({it.event.instance_id for it in live if plans[id(it)][0]})
    ecs_ids = sorted({it.event.instance_id for it in live if plans[id(it)][1]})
    discovery = discovery_for(handler)
    dereg: dict[str, act.ActionResult] = {}
    if dereg_ids:
        try:
            dereg = act.deregister_batch(clients.elbv2, dereg_ids, discovery.target_groups(clients.elbv2), dry_run=s.dry_run,
                                         registrations=lambda arn: discovery.registrations(clients.elbv2, arn))
        except act._CALL_ERRORS as exc:  # listing the target groups failed
            dereg = act._failure("deregister-targets", dereg_ids, exc)
    ecs: dict[str, act.ActionResult] = {}
    if ecs_ids:
        try:
            ecs = act.drain_ecs_batch(clients.ecs, ecs_ids, discovery.clusters(clients.ecs), dry_run=s.dry_run)
        except act._CALL_ERRORS as exc:  # listing the clusters failed
            ecs = act._failure("ecs-drain", ecs_ids, exc)
    requests = [act.CheckpointRequest(it.event.instance_id, it.event.event_id, look_first=it.attempts != 1,
                                      since=it.event.issued_at)
                for it in live if plans[id(it)][2]]
    checkpoints: dict[str, act.ActionResult] = {}
    if requests:
        now = handler._now()
        timeout = max(30, min(3600, int(max(it.event.seconds_left(now) for it in live))))
        checkpoints = act.send_checkpoints(clients.ssm, requests, s.checkpoint_command, dry_run=s.dry_run,
                                           timeout_seconds=timeout)

    for it in live:
        d, e, c = plans[id(it)]
        iid = it.event.instance_id
        for wanted, results in ((d, dereg), (e, ecs), (c, checkpoints)):
            if wanted and iid in results:
                it.add(results[iid])
        if it.event.kind == ev.REBALANCE_RECOMMENDATION and s.start_replacement_on_rebalance and it.out.group:
            _per_event(it, lambda it=it: act.start_replacement(
                clients.autoscaling, clients.ec2, iid, it.out.group, dry_run=s.dry_run, event_id=it.event.event_id))

    lifecycle = [it for it in live if it.event.kind == ev.LIFECYCLE_TERMINATE and it.settled_status is None]
    if lifecycle:
        _wait_drained(handler, lifecycle, wait_budget)
        for it in lifecycle:
            _per_event(it, lambda it=it: act.complete_lifecycle_action(
                clients.autoscaling, it.event.instance_id, it.event.lifecycle, dry_run=s.dry_run,
                result=s.lifecycle_result))

    for it in live:
        if it.settled_status is not None:
            continue
        retry = [a for a in it.out.actions if a.status == act.FAILED and a.detail.get("retry")]
        if retry:
            it.out.status, it.out.reason, it.settled_status = RETRY, "; ".join(a.message for a in retry), st.FAILED
            continue
        failed = [a for a in it.out.actions if a.status == act.FAILED]
        if failed:  # journaled failed and kept: the redelivery acts again (every step is idempotent)
            it.out.status, it.out.reason, it.settled_status = FAILED, "; ".join(a.message for a in failed), st.FAILED
            log.warning("failed %s %s (group %s), kept for retry: %s", it.event.kind, it.event.instance_id,
                        it.out.group or "-", it.out.reason)
            continue
        it.out.status, it.out.reason, it.settled_status = ACTED, "", st.DONE


def _per_event(it: _Item, step) -> None:
    try:
        it.add(step())
    except RetryEvent as exc:
        it.out.status, it.out.reason, it.settled_status = RETRY, str(exc), st.FAILED


def _wait_drained(handler: Handler, items: list[_Item], wait_budget: Optional[float]) -> None:
    """``Handler._wait_drained`` for every lifecycle event of the batch at once: poll the ones not yet
    drained until each is drained or reaches its deadline (minus the margin) or the caller's budget."""
    s, clients = handler.settings, handler.clients
    started = time.monotonic()
    pending = {id(it): it for it in items}
    polls = 0
    while pending:
        polls += 1
        for key, it in list(pending.items()):
            done = act.DrainResult(it.event.instance_id, s.dry_run, list(it.out.actions))
            if act.is_drained(clients, done, clusters=list(s.clusters) or None):
                it.add(act.ActionResult("wait-drained", act.DONE, f"{it.event.instance_id} drained", {"polls": polls}))
                del pending[key]
                continue
            left = it.event.seconds_left(handler._now()) - s.deadline_margin_seconds
            if wait_budget is not None:
                left = min(left, wait_budget - (time.monotonic() - started))
            if left <= 0:
                it.add(act.ActionResult("wait-drained", act.SKIPPED,
                                        f"{it.event.instance_id} not drained before the deadline; completing anyway",
                                        {"polls": polls}))
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
