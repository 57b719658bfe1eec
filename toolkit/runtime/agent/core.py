"""The on-instance interruption agent: poll IMDS, and on a notice drain the instance in a fixed order.

On the first terminal notice (spot interruption, Auto Scaling termination, or a scheduled maintenance
event that is due) the agent, once:

1. runs the ``on_notice`` command with ``SPOTKIT_NOTICE_KIND``, ``SPOTKIT_NOTICE_TIME``,
   ``SPOTKIT_DEADLINE`` (and ``SPOTKIT_NOTICE_ID``, ``SPOTKIT_NOTICE_ACTION``, ``SPOTKIT_DEADLINE_EPOCH``)
   in its environment, and kills it if it is still running at the deadline (notice time minus ``margin``);
2. sends SIGTERM (``workload_signal``) to the workload's process group, like a Kubernetes preStop hook
   followed by the pod's SIGTERM;
3. completes the ``spotkit-drain`` lifecycle action (CONTINUE) if the group is terminating the instance,
   now or later while the agent keeps running; first it waits (until the deadline at most) for the
   signaled workload to exit, since completing lets the group terminate the instance at once.

A rebalance recommendation runs the optional ``on_rebalance`` command (deadline: ``rebalance_timeout``)
and nothing else. Every step is a JSON line. Network errors, any status, slowness and unreadable bodies
are logged with context and polling goes on; one monitor's failure never hides another's notice: nothing
but a stop request ends the loop (or, with ``once``, the drain).

A notice that is already due (a spot ``hibernate`` or ``stop`` with no two-minute lead, a maintenance
event whose start has passed, a deadline already behind us) still runs the hook at once, best effort,
with the platform's standard notice minus ``margin`` counted from detection (``hook-due-at-once`` says
how late it was and how long the hook may run).

Drains are per interruption: after one, later terminal notices of the same interruption (the lifecycle
termination that follows a spot notice) do not run the hook again; a terminal notice that comes after
the drained one's time plus ``spotkit.runtime.notice.NOTICE_WINDOW_SECONDS``, or in another boot, is a new
interruption (a persistent spot instance stopped or hibernated and started again) and drains again.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from typing import Any, Callable, Optional

from spotkit.runtime.agent.options import (
    MAINTENANCE_LEAD_SECONDS,
    MARGIN_SECONDS,
    POLL_INTERVAL_SECONDS,
    TOKEN_TTL_SECONDS,
    WAIT_SECONDS,
)
from spotkit.runtime.agent.imds import ImdsClient, ImdsError
from spotkit.runtime.notice import (
    AZURE_TERMINATE_MAX_SECONDS,
    DEFAULT_LIFECYCLE_SECONDS,
    DRAIN_HOOK_NAME,
    MAX_LIFECYCLE_HEARTBEAT_SECONDS,
    NOTICE_TIME_SLACK_SECONDS,
    NOTICE_WINDOW_SECONDS,
    SPOT_NOTICE_SECONDS,
    STANDARD_NOTICE_SECONDS,
)
from spotkit.runtime.agent.lifecycle import (
    GROUP_TAG_PATH,
    INSTANCE_ID_PATH,
    LifecycleCompletion,
    complete_lifecycle_action,
)
from spotkit.runtime.agent.log import JsonLogger
from spotkit.runtime.agent.notices import (
    LIFECYCLE,
    LIFECYCLE_PATH,
    MAINTENANCE,
    REBALANCE,
    SPOT,
    Monitor,
    Notice,
    NoticeParseError,
    default_monitors,
    iso,
    read_boot_id,
)
from spotkit.runtime.agent.policy import STOP, plan_final, validate_policy, wait_until
from spotkit.runtime.agent.runner import (
    HookResult,
    SignalResult,
    group_alive,
    end_pending_sessions,
    run_hook,
    signal_workload,
    wait_for_group_exit,
)


@dataclass(frozen=True)
class AgentConfig:
    """What the agent does on a notice. Every field has a safe default.

    - ``on_notice``: shell command run once on the first terminal notice. Default: none (only signal).
    - ``on_rebalance``: shell command run on a rebalance recommendation. Default: none.
    - ``interval``: seconds between polls. Default ``spotkit.runtime.agent.options.POLL_INTERVAL_SECONDS`` (0.5).
    - ``margin``: the hook's deadline is the notice time minus this many seconds. Default 15.
    - ``once``: return after the first drain. Default off (keep watching, e.g. to complete the
      lifecycle action that follows a spot notice).
    - ``workload_pgid`` / ``workload_pidfile``: who gets ``workload_signal`` (default SIGTERM) after the
      hook. Default: nobody.
    - ``signal_on_hibernate``: also signal on a spot ``hibernate`` notice. Default off: the instance
      resumes with its memory, so the workload is better left running (the hook still runs).
    - ``complete_lifecycle``: complete the ``lifecycle_hook`` action when the group terminates the
      instance. Default on. ``group_name``: default from the instance tag aws:autoscaling:groupName.
    - ``lifecycle_heartbeat``: seconds the group waits for us (the hook's heartbeat); the deadline of a
      lifecycle notice. Default 300, the compute group's default.
    - ``rebalance_timeout``: deadline of ``on_rebalance``. Default 300.
    - ``maintenance_lead``: act on a scheduled event this many seconds before it starts. Default 900.
    - ``state_file``: remembers handled notices across restarts (systemd restarts the agent). Default none.
    - ``dry_run``: log "would have" instead of signaling and completing. The hook still runs.
    - ``notice_policy``: ``stop`` (default: signal right after the hook) or ``checkpoint-and-continue``
      (the hook is an insurance checkpoint, the workload keeps training and is signaled at the deadline
      minus the hook's measured run time; ``spotkit.runtime.agent.policy``).
    - ``checkpoint_seconds``: an estimate of one checkpoint's time for ``checkpoint-and-continue``; the
      longer of it and the measured time is used. Default: the measured time only.
    - ``cloud``: ``aws`` (default), ``gcp`` or ``azure``: whose metadata service is read
      (``spotkit.runtime.agent.clouds``); hooks get it as ``SPOTKIT_CLOUD``. ``notice_seconds``: GCP/Azure, the
      platform's window where it gives no time (default 30 s). ``wait_seconds``: GCP's longest hanging
      GET (default 10). ``on_advisory``: command run on an event the VM survives with its memory (Azure
      Freeze, GCP live migration); default none (logged only). Reboots are drained (``REBOOT_EVENTS``).
    """

    on_notice: Optional[str] = None
    on_rebalance: Optional[str] = None
    interval: float = POLL_INTERVAL_SECONDS
    margin: float = MARGIN_SECONDS["aws"]
    once: bool = False
    workload_pgid: Optional[int] = None
    workload_pidfile: Optional[str] = None
    workload_signal: str = "SIGTERM"
    signal_on_hibernate: bool = False
    complete_lifecycle: bool = True
    group_name: Optional[str] = None
    lifecycle_hook: str = DRAIN_HOOK_NAME
    lifecycle_heartbeat: float = float(DEFAULT_LIFECYCLE_SECONDS)
    rebalance_timeout: float = 300.0
    maintenance_lead: float = MAINTENANCE_LEAD_SECONDS
    state_file: Optional[str] = None
    dry_run: bool = False
    kill_grace: float = 1.0
    notice_policy: str = STOP
    checkpoint_seconds: Optional[float] = None
    cloud: str = "aws"
    notice_seconds: Optional[float] = None
    wait_seconds: float = WAIT_SECONDS
    on_advisory: Optional[str] = None

    def __post_init__(self) -> None:
        if self.cloud not in ("aws", "gcp", "azure"):
            raise ValueError(f"cloud must be aws, gcp or azure (got {self.cloud!r})")
        if self.notice_seconds is not None and self.notice_seconds <= 0:
            raise ValueError(f"notice_seconds must be more than 0 seconds (got {self.notice_seconds})")
        if self.wait_seconds <= 0:
            raise ValueError(f"wait_seconds must be more than 0 seconds (got {self.wait_seconds})")
        validate_policy(self.notice_policy, on_notice=self.on_notice, checkpoint_seconds=self.checkpoint_seconds)
        if self.interval <= 0:
            raise ValueError(f"interval must be more than 0 seconds (got {self.interval})")
        if not 0 < self.lifecycle_heartbeat <= MAX_LIFECYCLE_HEARTBEAT_SECONDS:
            raise ValueError(f"lifecycle_heartbeat must be more than 0 and at most {MAX_LIFECYCLE_HEARTBEAT_SECONDS} "
                             f"seconds, AWS's longest lifecycle hook heartbeat (got {self.lifecycle_heartbeat:g})")
        if self.margin < 0:
            raise ValueError(f"margin must be 0 or more seconds (got {self.margin})")
        if self.workload_pgid is not None and self.workload_pidfile:
            raise ValueError("give workload_pgid or workload_pidfile, not both")
        if self.workload_pgid is not None:
            from spotkit.runtime.agent.runner import WorkloadRefused, check_pgid

            try:
                check_pgid(self.workload_pgid)
            except WorkloadRefused as exc:
                raise ValueError(f"workload_pgid: {exc}") from None


@dataclass
class AgentResult:
    """What one drain did, with epoch timestamps (``None`` = step not taken)."""

    notice: dict
    detected_at: float
    deadline: float
    hook_started_at: Optional[float] = None
    hook_finished_at: Optional[float] = None
    signal_sent_at: Optional[float] = None
    workload_exited_at: Optional[float] = None
    lifecycle_completed_at: Optional[float] = None
    hook: Optional[HookResult] = None
    signal: Optional[SignalResult] = None
    lifecycle: Optional[LifecycleCompletion] = None
    final_plan: Optional[dict] = None  # checkpoint-and-continue: when and why the signal went out

    def to_dict(self) -> dict:
        return asdict(self)


class Agent:
    """Polls ``monitors`` through ``imds`` and drains on a notice. ``autoscaling`` is a boto3 client or a
    zero-argument factory (called only when a lifecycle action must be completed)."""

    def __init__(self, imds: ImdsClient, config: AgentConfig = AgentConfig(), *,
                 autoscaling: Any = None, log: Optional[Callable[..., Any]] = None,
                 monitors: Optional[list[Monitor]] = None, boot: Optional[str] = None):
        self.imds = imds
        if monitors is None and config.cloud != "aws":  # GCP/Azure: their monitors read through their client
            from spotkit.runtime.agent.clouds import bind_monitors

            log = log or JsonLogger()
            self.imds, monitors = bind_monitors(config, imds, log)
        self.config = config
        self.log = log or JsonLogger()
        self.boot = read_boot_id() if boot is None else boot
        self.monitors = monitors if monitors is not None else default_monitors(config.lifecycle_heartbeat, self.boot)
        self.instance_id: Optional[str] = None
        self._drained_until = 0.0  # epoch: terminal notices before this belong to the drained interruption
        self._autoscaling = autoscaling
        self._errors: dict[str, str] = {}
        self._announced: set[str] = set()
        self._first_seen: dict[str, float] = {}  # notice id -> epoch of first sight (whole seconds)
        self._clamped: set[str] = set()
        self.handled: set[str] = set()
        self.drained: Optional[AgentResult] = None
        self.lifecycle_done = False
        self.polls = 0
        self._load_state()

    # --- state across restarts ---------------------------------------------------------------

    def _load_state(self) -> None:
        path = self.config.state_file
        if not path or not os.path.exists(path):
            return
        try:
            with open(path) as fh:
                doc = json.load(fh)
            if not isinstance(doc, dict):
                raise ValueError(f"expected a JSON object, got a JSON {type(doc).__name__}")
            self.handled = {h for h in doc.get("handled", []) if isinstance(h, str)}
            if doc.get("boot") == self.boot:  # drains and completions are per boot: a restart is a new life
                self.lifecycle_done = doc.get("lifecycle_completed") is True
                until = doc.get("drained_until")
                self._drained_until = float(until) if isinstance(until, (int, float)) else 0.0
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            self.log("state-unreadable", path=path, error=f"{type(exc).__name__}: {exc}")

    def _save_state(self) -> None:
        path = self.config.state_file
        if not path:
            return
        tmp = f"{path}.tmp"
        try:
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            with open(tmp, "w") as fh:
                json.dump({"boot": self.boot, "handled": sorted(self.handled), "drained_until": self._drained_until,
                           "lifecycle_completed": self.lifecycle_done}, fh)
            os.replace(tmp, path)
        except OSError as exc:
            self.log("state-unwritable", path=path, error=f"{type(exc).__name__}: {exc}")

    def _already_drained(self, notice: Optional[Notice] = None) -> bool:
        """True when ``notice`` belongs to the interruption already drained (see the module doc)."""
        if notice is None:
            return self._drained_until > 0
        return notice.time.timestamp() <= self._drained_until

    # --- detect ------------------------------------------------------------------------------

    def poll_once(self) -> list[Notice]:
        """Read every monitor once; return notices not handled yet. Errors are logged, never raised."""
        self.polls += 1
        found: list[Notice] = []
        now = datetime.now(timezone.utc)
        for monitor in self.monitors:
            try:
                body = self.imds.get_text(monitor.path)
                if body is None:
                    monitor.clear()
                notices = monitor.parse(body, now) if body is not None else []
            except Exception as exc:  # ImdsError, NoticeParseError, or a bug: never let it hide another notice
                known = isinstance(exc, (ImdsError, NoticeParseError))
                message = f"{monitor.context}: {exc}" if known else f"{monitor.context}: {type(exc).__name__}: {exc}"
                if self._errors.get(monitor.path) != message:  # log each new error once, not every poll
                    self.log("poll-error", monitor=monitor.kind, error=message,
                             retryable=not isinstance(exc, NoticeParseError))
                self._errors[monitor.path] = message
                continue
            if monitor.path in self._errors:
                self.log("poll-recovered", monitor=monitor.kind, after=self._errors.pop(monitor.path))
            if notices:
                instance = self._instance()
                found.extend(self._bounded(n) for n in (n.for_instance(instance) for n in notices)
                             if n.id not in self.handled)
        return found

    def _instance(self) -> str:
        """This machine's id for notice ids, read once: AWS's instance id, GCP's numeric instance id, Azure's
        ``vmId`` (``spotkit.runtime.agent.clouds``). Pinned to ``unknown`` (logged) when the service cannot say."""
        if self.instance_id is None:
            identity = getattr(self.imds, "identity", None)
            try:
                if identity is not None:
                    text = identity.id
                    valid = bool(text) and len(text) < 80
                else:
                    text = (self.imds.get_text(INSTANCE_ID_PATH) or "").strip()
                    valid = text.startswith("i-") and len(text) < 40
            except ImdsError as exc:
                self.log("poll-error", monitor="instance-id", error=f"reading the instance id: {exc}", retryable=True)
                text, valid = "", False
            self.instance_id = text if valid else "unknown"
        return self.instance_id

    def _window(self, notice: Notice) -> Optional[float]:
        """The longest honest lead of ``notice``'s kind (seconds from first sight), or None (no bound here:
        scheduled events may come days ahead and are acted on ``maintenance_lead`` before their time)."""
        if notice.kind == SPOT:
            return SPOT_NOTICE_SECONDS
        if notice.kind == LIFECYCLE:
            return self.config.lifecycle_heartbeat
        if notice.detail.get("cloud") == "azure" and notice.action == "Terminate":
            return AZURE_TERMINATE_MAX_SECONDS
        return None

    def _bounded(self, notice: Notice) -> Notice:
        """``notice`` with its time clamped to first sight plus its kind's window when it lies beyond
        (``2099-01-01`` on the spot path): logged once, and the id (from the notice's key) is unchanged."""
        window = self._window(notice)
        if window is None:
            return notice
        first = self._first_seen.setdefault(notice.id, float(int(time.time())))
        limit = first + window
        if notice.time.timestamp() <= limit + NOTICE_TIME_SLACK_SECONDS:
            return notice
        clamped = datetime.fromtimestamp(limit, timezone.utc)
        if notice.id not in self._clamped:
            self._clamped.add(notice.id)
            self.log("notice-time-clamped", notice=notice.to_dict(), clamped_to=iso(clamped), window_seconds=window,
                     seconds_ahead=round(notice.time.timestamp() - first, 3),
                     reason=f"a {notice.kind} notice comes at most {window:g} s ahead: the time given is not "
                            "believed, the notice counts from first sight")
        return replace(notice, time=clamped, detail={**notice.detail, "time_given": iso(notice.time)})

    # --- decide + act ------------------------------------------------------------------------

    def step(self) -> Optional[AgentResult]:
        """One poll and whatever it calls for; returns the drain result when this step drained."""
        drained_now = None
        for notice in self.poll_once():
            if notice.kind == REBALANCE:
                self._rebalance(notice)
            elif notice.detail.get("advisory"):
                self._advisory(notice)
            elif notice.kind == MAINTENANCE and notice.time.timestamp() - time.time() > self.config.maintenance_lead:
                if notice.id not in self._announced:
                    self._announced.add(notice.id)
                    self.log("notice-scheduled", notice=notice.to_dict(),
                             acts_at=iso(datetime.fromtimestamp(notice.time.timestamp() - self.config.maintenance_lead,
                                                                timezone.utc)))
            elif not self._already_drained(notice):
                drained_now = self.drain(notice)
            else:
                self.handled.add(notice.id)
                self.log("notice-detected", notice=notice.to_dict(), note="already drained: hook not run again")
                if notice.kind == LIFECYCLE:
                    self._wait_for_workload(notice.time.timestamp() - self.config.margin)
                    self._complete_lifecycle()
                self._save_state()
        return drained_now

    def drain(self, notice: Notice, detected_at: Optional[float] = None) -> AgentResult:
        c = self.config
        detected = detected_at or time.time()
        deadline = notice.time.timestamp() - c.margin
        result = AgentResult(notice=notice.to_dict(), detected_at=detected, deadline=deadline)
        self.drained = result
        self.handled.add(notice.id)
        self._drained_until = max(self._drained_until, notice.time.timestamp() + NOTICE_WINDOW_SECONDS)
        self.log("notice-detected", notice=notice.to_dict(), deadline=_iso_epoch(deadline),
                 seconds_left=round(deadline - detected, 3))
        if deadline <= time.time():
            # Due at once (hibernate, a stop without warning, maintenance already due): act now, best effort.
            late = time.time() - deadline
            deadline = time.time() + max(1.0, STANDARD_NOTICE_SECONDS.get(c.cloud, SPOT_NOTICE_SECONDS) - c.margin)
            result.deadline = deadline
            self.log("hook-due-at-once" if c.on_notice else "notice-due-at-once",
                     seconds_past_deadline=round(late, 3), best_effort_deadline=_iso_epoch(deadline),
                     best_effort_seconds=round(deadline - time.time(), 3),
                     note="the notice came with no lead time: acting now, best effort")
        self._save_state()
        if c.on_notice:
            allowed = round(deadline - time.time(), 3)
            self.log("hook-started", command=c.on_notice, seconds_allowed=allowed)
            hook = run_hook(c.on_notice, _hook_env(notice, deadline), deadline, kill_grace=c.kill_grace)
            result.hook, result.hook_started_at, result.hook_finished_at = hook, hook.started_at, hook.finished_at
            self.log("hook-finished", returncode=hook.returncode, killed=hook.killed, seconds_allowed=allowed,
                     seconds=round(hook.finished_at - hook.started_at, 3), output_tail=hook.output_tail)
        hibernating = notice.kind == SPOT and notice.action == "hibernate" and not c.signal_on_hibernate
        if hibernating and (c.workload_pgid is not None or c.workload_pidfile):
            self.log("signal-skipped", reason="spot hibernate: memory is preserved, the workload resumes with it")
        elif c.workload_pgid is not None or c.workload_pidfile:
            if c.notice_policy != STOP and notice.kind != LIFECYCLE:
                # (a group terminating us, e.g. capacity rebalancing, has started our replacement: hand off now)
                result.final_plan = self._keep_training(result, deadline)
            sig = signal_workload(pgid=c.workload_pgid, pidfile=c.workload_pidfile, sig=c.workload_signal,
                                  dry_run=c.dry_run)
            result.signal, result.signal_sent_at = sig, sig.sent_at
            if sig.dry_run:
                self.log("would-have-signaled", target=sig.target, signal=sig.signal)
            elif sig.error:
                self.log("signal-failed", target=sig.target, signal=sig.signal, error=sig.error)
            else:
                self.log("workload-signaled", target=sig.target, signal=sig.signal)
        self._after_drain(notice, deadline, result)
        if notice.kind == LIFECYCLE or (c.cloud == "aws" and self._group_terminating()):
            result.workload_exited_at = self._wait_for_workload(deadline)
            result.lifecycle = self._complete_lifecycle()
            if result.lifecycle is not None:
                result.lifecycle_completed_at = result.lifecycle.completed_at
        self._save_state()
        return result

    def _after_drain(self, notice: Notice, deadline: float, result: AgentResult) -> None:
        """Monitors that answer a drain (Azure: acknowledge the event so the platform proceeds now) are
        called once the signaled workload has exited or its deadline has passed."""
        callbacks = [m.after_drain for m in self.monitors if hasattr(m, "after_drain")]
        if not callbacks:
            return
        if result.signal is not None and not result.signal.dry_run:
            result.workload_exited_at = self._wait_for_workload(deadline)
            if result.workload_exited_at is None and result.signal.pgid is not None:
                # Acknowledging lets the platform proceed at once: with the workload still saving, that would
                # cut its final checkpoint short. Unanswered, the event proceeds at its own time.
                self.log("acknowledge-skipped", reason="the workload was still running at the deadline: the event "
                                                       "proceeds at its own time", notice=notice.to_dict())
                return
        for callback in callbacks:
            try:
                done = callback(notice, dry_run=self.config.dry_run)
            except ImdsError as exc:
                self.log("acknowledge-failed", error=str(exc), notice=notice.to_dict())
                continue
            if done:
                self.log(done.pop("event", "notice-acknowledged"), **done)

    def _advisory(self, notice: Notice) -> None:
        """An event the instance survives with its memory (Azure Freeze, GCP live migration): log it and run
        ``on_advisory`` if given; nothing is signaled, nothing drained."""
        c = self.config
        self.handled.add(notice.id)
        self.log("notice-detected", notice=notice.to_dict(), note="advisory: the instance survives it, no drain")
        if c.on_advisory:
            deadline = max(notice.time.timestamp() - c.margin, time.time() + 1.0)
            self.log("advisory-hook-started", command=c.on_advisory)
            hook = run_hook(c.on_advisory, _hook_env(notice, deadline), deadline, kill_grace=c.kill_grace)
            self.log("advisory-hook-finished", returncode=hook.returncode, killed=hook.killed,
                     seconds=round(hook.finished_at - hook.started_at, 3), output_tail=hook.output_tail)
        self._save_state()

    def _keep_training(self, result: AgentResult, deadline: float) -> dict:
        """checkpoint-and-continue: let the workload train until its final checkpoint is due."""
        hook = result.hook
        plan = plan_final(self.config.notice_policy, deadline=deadline, now=time.time(),
                          hook_seconds=None if hook is None else hook.finished_at - hook.started_at,
                          hook_ok=None if hook is None else hook.ok, checkpoint_seconds=self.config.checkpoint_seconds)
        self.log("final-checkpoint-planned", at=_iso_epoch(plan.final_at), reason=plan.reason,
                 checkpoint_seconds=None if plan.checkpoint_seconds is None else round(plan.checkpoint_seconds, 3))
        pgid = self.config.workload_pgid
        stop = getattr(self, "_stop", None)
        outcome = wait_until(plan.final_at, workload_gone=(lambda: not group_alive(pgid)) if pgid is not None else None,
                             stopped=stop.is_set if stop is not None else None)
        return {**plan.to_dict(), "outcome": outcome}

    def _wait_for_workload(self, deadline: float) -> Optional[float]:
        """Before letting the group terminate us: give the signaled workload until ``deadline`` to exit."""
        sig = self.drained.signal if self.drained else None
        if sig is None or sig.pgid is None or sig.sent_at is None:
            return None
        exited = wait_for_group_exit(sig.pgid, deadline)
        if exited is None:
            self.log("workload-still-running", target=sig.target, deadline=_iso_epoch(deadline))
        else:
            self.log("workload-exited", target=sig.target, seconds_after_signal=round(exited - sig.sent_at, 3))
        return exited

    def _group_terminating(self) -> bool:
        try:
            return (self.imds.get_text(LIFECYCLE_PATH) or "").strip() == "Terminated"
        except ImdsError as exc:
            self.log("poll-error", monitor=LIFECYCLE, error=f"checking the Auto Scaling target lifecycle state: {exc}",
                     retryable=True)
            return False

    def _complete_lifecycle(self) -> Optional[LifecycleCompletion]:
        c = self.config
        if not c.complete_lifecycle or self.lifecycle_done:
            return None
        try:
            group = c.group_name or self.imds.get_text(GROUP_TAG_PATH)
            instance_id = self.imds.get_text(INSTANCE_ID_PATH)
        except ImdsError as exc:
            self.log("lifecycle-failed", error=f"reading the group name and instance id from IMDS: {exc}")
            return None
        if not group or not instance_id:
            self.log("lifecycle-failed", error="no group name: pass --group or enable instance metadata tags",
                     group=group, instance_id=instance_id)
            return None
        try:
            client = self._autoscaling() if callable(self._autoscaling) else self._autoscaling
        except Exception as exc:  # building the client: credentials, region...
            self.log("lifecycle-failed", error=f"creating the Auto Scaling client: {type(exc).__name__}: {exc}")
            return None
        if client is None:
            self.log("lifecycle-left-to-handler", group=group, instance_id=instance_id,
                     reason="neither boto3 nor the AWS CLI is available here: the interruption handler completes "
                            "the lifecycle action (or the hook's heartbeat runs out and the group goes on)")
            return None
        done = complete_lifecycle_action(client, group=group, instance_id=instance_id, hook=c.lifecycle_hook,
                                         dry_run=c.dry_run)
        if done.dry_run:
            self.log("would-have-completed-lifecycle", group=group, instance_id=instance_id, hook=c.lifecycle_hook)
        elif done.error:
            self.log("lifecycle-failed", error=done.error)
        else:
            self.lifecycle_done = True
            self.log("lifecycle-completed", group=group, instance_id=instance_id, hook=c.lifecycle_hook,
                     result=done.result, via="AWS CLI" if type(client).__name__ == "AwsCliAutoScaling" else "boto3")
        return done

    def _rebalance(self, notice: Notice) -> None:
        c = self.config
        self.handled.add(notice.id)
        self.log("notice-detected", notice=notice.to_dict())
        if c.on_rebalance:
            deadline = time.time() + c.rebalance_timeout
            self.log("rebalance-hook-started", command=c.on_rebalance)
            hook = run_hook(c.on_rebalance, _hook_env(notice, deadline), deadline, kill_grace=c.kill_grace)
            self.log("rebalance-hook-finished", returncode=hook.returncode, killed=hook.killed,
                     seconds=round(hook.finished_at - hook.started_at, 3), output_tail=hook.output_tail)
        self._save_state()

    # --- loop --------------------------------------------------------------------------------

    def run(self, stop: Optional[threading.Event] = None) -> Optional[AgentResult]:
        """Poll every ``interval`` seconds until ``stop`` is set (or, with ``once``, until the first drain)."""
        stop = stop or threading.Event()
        self._stop = stop
        c = self.config
        self.log("agent-started", cloud=c.cloud, metadata_url=self.imds.base_url, interval=c.interval, margin=c.margin,
                 once=c.once, on_notice=c.on_notice, on_rebalance=c.on_rebalance, dry_run=c.dry_run)
        finished = False
        try:
            while not stop.is_set():
                started = time.monotonic()
                result = self.step()
                if result is not None and c.once:
                    finished = True
                    return result
                stop.wait(max(0.0, c.interval - (time.monotonic() - started)))
            return self.drained
        finally:
            self.imds.close()
            # What a hook left in its session runs until its deadline at most, and never past the agent: after
            # a ``once`` drain the agent waits for that deadline (bounded by the notice window); on a stop
            # request it kills them now.
            left = end_pending_sessions(stop, wait=finished)
            if left:
                self.log("hook-leftovers-killed", sessions=left,
                         note="processes a hook left in its session end at its deadline or when the agent stops")
            self.log("agent-stopped", polls=self.polls, drained=self.drained is not None)


def _iso_epoch(ts: float) -> str:
    return iso(datetime.fromtimestamp(ts, timezone.utc))


def _hook_env(notice: Notice, deadline: float) -> dict[str, str]:
    return {
        "SPOTKIT_CLOUD": notice.detail.get("cloud", "aws"),
        "SPOTKIT_NOTICE_KIND": notice.kind,
        "SPOTKIT_NOTICE_TIME": iso(notice.time),
        "SPOTKIT_NOTICE_ACTION": notice.action,
        "SPOTKIT_NOTICE_ID": notice.id,
        "SPOTKIT_DEADLINE": _iso_epoch(deadline),
        "SPOTKIT_DEADLINE_EPOCH": f"{deadline:.3f}",
    }


def run_until_notice(metadata_url: str, config: AgentConfig = AgentConfig(), *, autoscaling: Any = None,
                     log: Optional[Callable[..., Any]] = None, token_ttl: int = TOKEN_TTL_SECONDS,
                     allow_v1: bool = False,
                     timeout: Optional[float] = None, stop: Optional[threading.Event] = None) -> AgentResult:
    """Library entry (the drill): watch ``metadata_url`` until the first terminal notice, drain, return.

    The result has the timings: ``detected_at``, ``hook_started_at``, ``hook_finished_at``,
    ``signal_sent_at``, ``lifecycle_completed_at``. Raises ``TimeoutError`` after ``timeout`` seconds
    without a notice.
    """
    from dataclasses import replace

    stop = stop or threading.Event()
    timer = threading.Timer(timeout, stop.set) if timeout else None
    if timer:
        timer.daemon = True
        timer.start()
    try:
        if config.cloud == "aws":
            client = ImdsClient(metadata_url, token_ttl=token_ttl, allow_v1=allow_v1)
        else:
            from spotkit.runtime.agent.clouds import client_for

            client = client_for(config.cloud, metadata_url)
        agent = Agent(client, replace(config, once=True), autoscaling=autoscaling, log=log)
        result = agent.run(stop)
    finally:
        if timer:
            timer.cancel()
    if result is None:
        raise TimeoutError(f"no interruption notice from {metadata_url} within {timeout} s")
    return result
