"""Decide and act: which actions an interruption warning gets, in which order, exactly once.

Every event takes one path (``batch.py``): ``Handler.handle_batch(bodies)`` for the messages of one receive;
``Handler.handle_body(body)`` and ``Handler.handle(event)`` are a batch of one. For each event:

1. claim the event in the store (a duplicate or an event another worker is handling stops here);
2. ``Handler.decide`` (``scope.py``, the one decision): an event from another account or
   region is dropped; an instance or group spotkit does not manage (no ``spotkit:managed=true`` /
   ``spotkit:group`` tag), or outside ``settings.groups``, is ignored; both journaled with the reason.
   A lifecycle action's deadline is its hook's heartbeat timeout (``with_hook_deadline``);
3. act by kind (every action journaled):

   ============================== ===============================================================
   spot / capacity-reservation     deregister targets, ECS DRAINING, checkpoint
   interruption, scheduled change
   ASG terminate lifecycle action  the same, then wait until drained (or the deadline), then
                                   complete the lifecycle action
   rebalance recommendation        checkpoint; optionally drain and/or start a replacement early
   state change (stopping,         deregister targets (and ECS DRAINING while it is stopping);
   shutting-down, stopped, ...)    too late to checkpoint
   launch failure (a group's)      spot capacity: raise the on-demand base by the shortfall, once
                                   (``capacity.py``, ``fallback.py``); other causes: journaled
   ECS placement failure           the same for the cluster's groups whose spot launches failed
   scheduled fallback check        step groups in fallback back to spot (hold time, in steps)
   ============================== ===============================================================

   The instance steps are the batched ``actions.drain``, shared by every event of the batch.

4. finish: ``done``; or ``failed`` when an action failed or on a transient error, which releases the
   claim so the message's retry acts again (every action is idempotent); a message that keeps failing
   ends in the dead-letter queue. The instance's group (its ``spotkit:group`` tag, else its Auto
   Scaling group) is journaled with the event, for ``spotkit status``.

Outcomes tell a drop (delete the message: malformed, not ours, duplicate; a message that cannot be
parsed is journaled with its reason) from a retry (keep it: a transient error, a failed action, or an
event another worker is still handling).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Callable, Optional, Sequence

from spotkit.runtime.interruption import actions as act
from spotkit.runtime.interruption import events as ev
from spotkit.runtime.interruption import fallback as fb
from spotkit.runtime.interruption import inventory
from spotkit.runtime.interruption import store as st
from spotkit.runtime.interruption.events import DropEvent, IgnoreEvent, InterruptionEvent, RetryEvent
from spotkit.runtime.interruption.scope import Scope, Verdict
from spotkit.runtime.notice import DEFAULT_CHECKPOINT_COMMAND, DEFAULT_LIFECYCLE_SECONDS, TAG_GROUP, TAG_MANAGED

log = logging.getLogger("spotkit.interruption")

GROUP_TAG = TAG_GROUP              # the tag contract lives in toolkit/runtime/notice.py
MANAGED_TAG = TAG_MANAGED

# Outcome statuses. RETRY and IN_PROGRESS keep the message on the queue: an event another worker is
# handling comes back later and is then a DUPLICATE (deleted) or, if that worker died and its lease
# ran out, claimed again.
ACTED = "acted"
DUPLICATE = "duplicate"
IN_PROGRESS = "in-progress"
IGNORED = "ignored"
DROPPED = "dropped"
RETRY = "retry"
FAILED = "failed"  # an action failed: journaled failed, the message is kept (retried, then the DLQ)
DELETE_STATUSES = (ACTED, DUPLICATE, IGNORED, DROPPED)


@dataclass(frozen=True)
class HandlerSettings:
    """What the handler does. Defaults are the safe, common case.

    - ``dry_run``: read everything, change nothing (every mutating call logs "would have ..."). Default off.
    - ``checkpoint_command``: shell run on the instance by SSM Run Command (AWS-RunShellScript).
      Default: ``/opt/spotkit/hooks/checkpoint`` if it exists. Empty: no checkpoint.
    - ``checkpoint_on_rebalance``: checkpoint on a rebalance recommendation too. Default on.
    - ``drain_on_rebalance``: also deregister targets and drain ECS on a rebalance. Default off (a
      recommendation is not a notice; most are followed by nothing).
    - ``start_replacement_on_rebalance``: raise the group's desired capacity by one on a rebalance
      recommendation (capped at max_size, once per instance). Default off.
    - ``groups``: act only for these ``spotkit:group`` values. Default: every spotkit-managed instance.
    - ``clusters``: ECS clusters to look in. Default: every cluster in the region.
    - ``lifecycle_result``: CONTINUE (default) or ABANDON, sent when completing the lifecycle action.
    - ``drain_poll_seconds`` / ``deadline_margin_seconds``: how often to check that a terminating
      instance has drained, and how long before the deadline to give up waiting and complete. 5 / 10.
    - ``lease_seconds``: how long a claim holds before a redelivery may take it over. Default 360.
    - ``fallback``: act on spot capacity failures (raise the on-demand base, return on a schedule).
      Default off (the stacks turn it on); off, launch failures are journaled and nothing changes.
    - ``fallback_max_on_demand_base`` / ``fallback_hold_minutes`` / ``fallback_check_every_minutes``: the
      ceiling of the raised base, the least time between two changes, the return check's period. 2 / 30 / 10.
    - ``account`` / ``region``: the handler's own; an event claiming another is dropped (``scope``).
      Default: found on first use (the region of the clients, the account from STS GetCallerIdentity; the
      Lambda passes both from its own ARN).
    """

    dry_run: bool = False
    checkpoint_command: str = DEFAULT_CHECKPOINT_COMMAND
    checkpoint_on_rebalance: bool = True
    drain_on_rebalance: bool = False
    start_replacement_on_rebalance: bool = False
    groups: tuple[str, ...] = ()
    clusters: tuple[str, ...] = ()
    lifecycle_result: str = "CONTINUE"
    drain_poll_seconds: float = 5.0
    deadline_margin_seconds: float = 10.0
    lease_seconds: int = st.DEFAULT_LEASE_SECONDS
    fallback: bool = False
    fallback_max_on_demand_base: int = 2
    fallback_hold_minutes: int = 30
    fallback_check_every_minutes: int = 10
    account: str = ""
    region: str = ""

    @property
    def fallback_policy(self) -> fb.FallbackPolicy:
        return fb.FallbackPolicy(max_on_demand_base=self.fallback_max_on_demand_base,
                                 hold_minutes=self.fallback_hold_minutes,
                                 check_every_minutes=self.fallback_check_every_minutes)


@dataclass
class Outcome:
    status: str
    reason: str = ""
    event_id: str = ""
    kind: str = ""
    instance_id: str = ""
    group: str = ""
    actions: list[act.ActionResult] = field(default_factory=list)
    malformed: bool = False  # dropped because the message cannot be read (not: not ours, not needed)

    @property
    def delete_message(self) -> bool:
        return self.status in DELETE_STATUSES

    @property
    def trouble(self) -> bool:
        """Worth a non-zero exit: failed, kept for retry, or a message that cannot be read."""
        return not self.delete_message or self.malformed


class Handler:
    """Turns events into actions. Thread-safe: the queue consumer calls ``handle`` from many threads."""

    def __init__(self, clients: act.Clients, store: st.EventStore, settings: HandlerSettings = HandlerSettings(), *,
                 sleep: Callable[[float], None] = time.sleep, now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)):
        self.clients = clients
        self.store = store
        self.settings = settings
        self._sleep = sleep
        self._now = now
        self._identity: Optional[tuple[str, str]] = None
        self._hooks: dict[tuple[str, str], int] = {}  # (group, hook) -> heartbeat timeout, read once each
        self._lock = threading.Lock()
        self._identity_lock = threading.Lock()

    # --- entry points ---------------------------------------------------------------------------

    def handle_body(self, body, *, wait_budget_seconds: Optional[float] = None) -> list[Outcome]:
        """Handle one SQS message body (or EventBridge event dict): one outcome per event in it. A batch of one."""
        return self.handle_batch([body], wait_budget_seconds=wait_budget_seconds)[0]

    def parse(self, body) -> tuple[list[InterruptionEvent], Optional[Outcome]]:
        """The events of one body, or (no events, its final outcome): ``ignored`` for a valid event that needs
        nothing, ``dropped`` (journaled with the reason) for one that cannot be read, ``retry`` when parsing
        hit a bug (that message alone is kept: it ends in the dead-letter queue, its batch-mates go on)."""
        try:
            return ev.from_message_body(body), None
        except IgnoreEvent as exc:
            log.info("ignoring a message: %s", exc)
            return [], Outcome(IGNORED, str(exc))
        except DropEvent as exc:
            log.warning("dropping a message: %s", exc)
            out = Outcome(DROPPED, str(exc), malformed=True)
            try:
                out.event_id = self.store.record_dropped(body, str(exc))
            except Exception as journal_exc:  # the journal is down: keep the message, it comes back
                log.warning("journaling the dropped message failed: %s", journal_exc)
                out.status, out.reason = RETRY, f"{exc} (not journaled: {type(journal_exc).__name__}: {journal_exc})"
            return [], out
        except Exception as exc:  # noqa: BLE001 - a bug in a parser: this message alone is kept (then the DLQ)
            log.exception("reading a message failed")
            return [], Outcome(RETRY, f"reading the message failed ({type(exc).__name__}: {exc})", malformed=True)

    def handle_batch(self, bodies, *, wait_budget_seconds: Optional[float] = None) -> list[list[Outcome]]:
        """Handle the bodies of one receive together (one outcome list per body, in order): the AWS
        calls are shared by the batch, the journal and the outcomes stay per event. See ``batch``."""
        from spotkit.runtime.interruption.batch import handle_batch

        return handle_batch(self, bodies, wait_budget_seconds=wait_budget_seconds)

    def handle(self, event: InterruptionEvent, *, wait_budget_seconds: Optional[float] = None) -> Outcome:
        """Handle one event: a batch of one (``batch.handle_events``)."""
        from spotkit.runtime.interruption.batch import handle_events

        return handle_events(self, [event], wait_budget_seconds=wait_budget_seconds)[0]

    # --- decide ---------------------------------------------------------------------------------

    def identity(self) -> tuple[str, str]:
        """This handler's (account, region): from the settings, else the clients' region and STS (once)."""
        if self._identity is not None:
            return self._identity
        with self._identity_lock:  # once for all workers (the first batch of each would otherwise ask too)
            if self._identity is None:
                account, region = self.settings.account, self.settings.region
                try:
                    region = region or self.clients.ec2.meta.region_name or ""
                    if not account:
                        account = self.clients.get("sts").get_caller_identity()["Account"]
                except act._CALL_ERRORS as exc:
                    raise RetryEvent(f"finding this handler's account: {exc}") from exc
                self._identity = (account, region)
        return self._identity

    @property
    def scope(self) -> Scope:
        account, region = self.identity()
        return Scope(account=account, region=region, groups=tuple(self.settings.groups))

    def decide(self, events: Sequence[InterruptionEvent]) -> dict[str, Verdict]:
        """Event id -> whether to act (``toolkit/runtime/interruption/scope.py``): one DescribeInstances for the
        instances and one DescribeAutoScalingGroups for the groups the events name, however many events.
        Raises ``RetryEvent`` when AWS cannot be asked now."""
        scope = self.scope
        instance_ids = sorted({e.instance_id for e in events if e.kind not in ev.CAPACITY_KINDS})
        group_names = sorted({e.group_name for e in events if e.kind == ev.LAUNCH_FAILURE and e.group_name})
        try:
            described = inventory.describe_instances_batch(self.clients.ec2, instance_ids)
            groups = inventory.describe_groups_batch(self.clients.autoscaling, group_names)
        except act._CALL_ERRORS as exc:
            raise RetryEvent(f"describing {len(instance_ids)} instance(s), {len(group_names)} group(s): {exc}") from exc
        verdicts = {}
        for e in events:
            if e.kind == ev.LAUNCH_FAILURE:
                verdicts[e.event_id] = scope.group(e.group_name, groups.get(e.group_name), account=e.account,
                                                   region=e.region)
            elif e.kind in ev.CAPACITY_KINDS:  # about every managed group (of a cluster): filtered in _capacity
                reason = scope.foreign(e.account, e.region)
                verdicts[e.event_id] = Verdict(not reason, e.group_name, reason, DROPPED if reason else "")
            else:
                verdicts[e.event_id] = scope.instance(e.instance_id, described.get(e.instance_id), account=e.account,
                                                      region=e.region, group_hint=e.group_name)
        return verdicts

    def managed_groups(self, names: Sequence[str]) -> list[str]:
        """Of ``names``, the Auto Scaling groups this handler may change (spotkit's, in ``groups``)."""
        return self.scope.groups_of(list(inventory.describe_groups_batch(self.clients.autoscaling, names).values()))

    def hook_heartbeat_seconds(self, group: str, hook: str) -> int:
        """The heartbeat timeout of a lifecycle hook (DescribeLifecycleHooks, read once per hook and kept).
        When it cannot be read, ``DEFAULT_LIFECYCLE_SECONDS`` (300 s: the shortest common setting, so the
        handler completes early rather than after the hook has already timed out); not kept, so the next
        event asks again."""
        key = (group, hook)
        with self._lock:
            if key in self._hooks:
                return self._hooks[key]
        try:
            hooks = self.clients.autoscaling.describe_lifecycle_hooks(
                AutoScalingGroupName=group, LifecycleHookNames=[hook])["LifecycleHooks"]
        except act._CALL_ERRORS as exc:
            log.warning("reading lifecycle hook %s of %s failed (assuming %d s): %s", hook, group,
                        DEFAULT_LIFECYCLE_SECONDS, exc)
            return DEFAULT_LIFECYCLE_SECONDS
        seconds = next((int(h["HeartbeatTimeout"]) for h in hooks if h.get("HeartbeatTimeout")), None)
        if seconds is None:
            log.warning("lifecycle hook %s of %s not found (assuming %d s)", hook, group, DEFAULT_LIFECYCLE_SECONDS)
            return DEFAULT_LIFECYCLE_SECONDS
        with self._lock:
            self._hooks[key] = seconds
        return seconds

    def with_hook_deadline(self, event: InterruptionEvent) -> InterruptionEvent:
        """A lifecycle action's deadline from its hook's heartbeat timeout (AWS's default is 3600 s, and a
        group may set 30 to 7200): the parser can only assume one."""
        if event.kind != ev.LIFECYCLE_TERMINATE or event.lifecycle is None:
            return event
        seconds = self.hook_heartbeat_seconds(event.lifecycle.group_name, event.lifecycle.hook_name)
        deadline = ev.parse_time(event.issued_at) + timedelta(seconds=seconds)
        return replace(event, deadline=ev._iso(deadline))
