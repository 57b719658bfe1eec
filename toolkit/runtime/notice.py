"""What a notice is: its kinds, its identity, its times, the standard notice windows and the tag contract.

One module owns these so the on-instance agent, the interruption handler (Lambda and ``handle-events``),
the journal and ``spotkit status`` mean the same thing by the same words. Standard library only, and
correct on Python 3.9 (Amazon Linux 2023's system Python) through 3.13: it is shipped inside the agent
artifact (``spotkit-agent.pyz``).

Identity. ``notice_id(kind, instance, key)`` is ``<kind>:<instance>:<12 hex of sha256(kind|instance|key)>``.
The key is what AWS keeps stable for one notice and changes for the next one:

- spot interruption / capacity-reservation interruption: the action and the *window* of the time the
  instance goes away (``spot_key``). IMDS gives that time; EventBridge gives the time it sent the warning
  (the action comes 120 s later), so the two sources agree to within seconds, not exactly: the window
  (10 minutes) makes them the same notice, while a persistent instance interrupted again hours later
  (stop or hibernate, then restarted) is a new one. Two sources straddling a window edge are handled
  twice; every action spotkit takes is idempotent, so the cost is a second checkpoint request.
- rebalance recommendation: one per instance and boot (``rebalance_key``): AWS may move its
  ``noticeTime`` (AWS's own metadata mock returns the request time), so the time is not part of it.
- Auto Scaling lifecycle termination: the lifecycle action token (the handler), or the boot (the agent,
  which has no token: an instance is terminated once per life).
- scheduled maintenance (IMDS / AWS Health): the event id or ARN.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Optional

# Kinds, in the words of the warning. Values are stable: they are part of ids, hook environments and journals.
SPOT_INTERRUPTION = "spot-interruption"
REBALANCE_RECOMMENDATION = "rebalance-recommendation"
STATE_CHANGE = "state-change"
SCHEDULED_CHANGE = "scheduled-change"
LIFECYCLE_TERMINATE = "asg-lifecycle-terminate"
CAPACITY_RESERVATION_INTERRUPTION = "capacity-reservation-interruption"
# Capacity kinds (issue 18): not about one instance but about a group. Their "instance" part of the id is
# the group (or the ECS cluster); the handler acts on the group's on-demand split, not on an instance.
LAUNCH_FAILURE = "launch-failure"              # Auto Scaling: EC2 Instance Launch Unsuccessful
PLACEMENT_FAILURE = "placement-failure"        # ECS: SERVICE_TASK_PLACEMENT_FAILURE
FALLBACK_CHECK = "fallback-check"              # the scheduled return-to-spot check
CAPACITY_KINDS = (LAUNCH_FAILURE, PLACEMENT_FAILURE, FALLBACK_CHECK)
KINDS = (SPOT_INTERRUPTION, REBALANCE_RECOMMENDATION, STATE_CHANGE, SCHEDULED_CHANGE, LIFECYCLE_TERMINATE,
         CAPACITY_RESERVATION_INTERRUPTION) + CAPACITY_KINDS

# How long a platform warns before it takes the instance (seconds). AWS: the spot two-minute warning.
# GCP: preemption about 30 s ahead. Azure: a Preempt scheduled event at least 30 s ahead.
SPOT_NOTICE_SECONDS = 120
STANDARD_NOTICE_SECONDS = {"aws": SPOT_NOTICE_SECONDS, "gcp": 30, "azure": 30}
DEFAULT_LIFECYCLE_SECONDS = 300
# The termination lifecycle hook spotkit's groups create (modules.compute_group) and its agent, handler and
# drain runbook complete: the instance gets up to its heartbeat (DEFAULT_LIFECYCLE_SECONDS) to drain.
DRAIN_HOOK_NAME = "spotkit-drain"
TERMINATING_TRANSITION = "autoscaling:EC2_INSTANCE_TERMINATING"  # the transition that hook is on
# The checkpoint hook an instance may install, and the command the handler runs there through SSM
# (``InterruptionEventsSettings.checkpoint_command``'s default): it never fails for a missing hook.
CHECKPOINT_HOOK_PATH = "/opt/spotkit/hooks/checkpoint"
DEFAULT_CHECKPOINT_COMMAND = (f"if [ -x {CHECKPOINT_HOOK_PATH} ]; then {CHECKPOINT_HOOK_PATH}; "
                              f"else echo 'spotkit: no checkpoint hook at {CHECKPOINT_HOOK_PATH}'; fi")
# AWS's longest lifecycle hook heartbeat (HeartbeatTimeout 30 to 7200 s): the bound of a lifecycle notice.
MAX_LIFECYCLE_HEARTBEAT_SECONDS = 7200
# Azure's Terminate (scale-in or delete of a scale set VM) comes 5 to 15 minutes ahead (user configurable).
AZURE_TERMINATE_MAX_SECONDS = 900
# Slack for clocks and whole-second times when a notice time is checked against its kind's window.
NOTICE_TIME_SLACK_SECONDS = 5

# Reboot-class events: the machine goes down and comes back with its disks (memory and running
# processes are lost). One policy on every cloud (docs/agent.md): drained like a terminal notice (the
# checkpoint hook, then the workload signal), never handed to the Auto Scaling group (no lifecycle
# completion), acknowledged on Azure when the event names this VM alone.
REBOOT_EVENTS = {"aws": ("system-reboot", "instance-reboot"), "azure": ("Reboot", "Redeploy")}

# The window that makes two sources' views of one spot notice the same notice (see the module doc).
NOTICE_WINDOW_SECONDS = 600

# The tag contract: what spotkit's stacks write and its agent, handler and runbooks read.
TAG_GROUP = "spotkit:group"               # every instance and retained volume of a spotkit group
TAG_MANAGED = "spotkit:managed"           # created by spotkit
TAG_DEVICE = "spotkit:device"             # retained data volume: the device it belongs at (/dev/sdf)
TAG_RETAIN = "spotkit:retain"             # "true": kept on terminate, safe to re-attach to a replacement
TAG_RETAIN_GROUP = "spotkit:retain-group" # the one tag the DLM snapshot policy targets
TAG_NAME = "spotkit:name"                 # every resource of a spotkit stack (provider default tags): its name
ASG_NAME_TAG = "aws:autoscaling:groupName"
TAG_SUPERSEDED_BY = "spotkit:superseded-by"  # a copy that lost a race to another copy of the same volume: the winner
TAG_LOCK = "spotkit:lock"                # on an Auto Scaling group: the lease of the runbook run working on it
RETAIN_SUPERSEDED = "superseded"         # spotkit:retain value of a superseded copy (never offered as waiting)
# The on-demand fallback, on the Auto Scaling group (``recover replace`` and the handler write them,
# ``restore-spot``, the return check and ``spotkit status`` read them).
TAG_FALLBACK_BASE = "spotkit:fallback-original-on-demand-base"  # the split before the fallback
TAG_FALLBACK_SINCE = "spotkit:fallback-since"                   # when the fallback began
TAG_FALLBACK_CHANGED = "spotkit:fallback-changed-at"            # the last change of the base (hold time)
TAG_FALLBACK_NEXT_CHECK = "spotkit:fallback-next-check"         # when the return check looks next
FALLBACK_TAGS = (TAG_FALLBACK_BASE, TAG_FALLBACK_SINCE, TAG_FALLBACK_CHANGED, TAG_FALLBACK_NEXT_CHECK)
# On an ECS service (``modules/inference_service.py`` writes it, ``spotkit simulate`` reads it): how many of
# its ``desired_count`` replicas are spare spot replicas, so the replicas wanted are ``desired_count`` minus it.
TAG_SPOT_OVERPROVISION = "spotkit:spot-overprovision"
# On any resource: "SPOTxxx: reason; ..." suppresses those `spotkit check` rules there, with the reason shown.
TAG_SKIP_CHECK = "spotkit:skip-check"
TAG_STACK = "spotkit:stack"              # every resource of a stack (provider default tags): the stack's id
TAG_PURPOSE = "spotkit:purpose"          # what a shared resource is for (the agent artifact's bucket)
TAG_TIER = "spotkit:tier"                # subnets: "public" or "private" (``spotkit synth`` reads it)
TAG_CLUSTER = "spotkit:cluster"          # EKS cluster, its node groups and Karpenter's nodes: the cluster
TAG_NODE_GROUP = "spotkit:node-group"    # EKS node group: its name
TAG_LIFECYCLE = "spotkit:lifecycle"      # EKS node group: "spot" or "on-demand"
TAG_SNAPSHOT_OF = "spotkit:snapshot-of"  # DLM snapshots: the retained volume group they were taken of
TAG_INTERRUPT = "spotkit:interrupt"      # an instance `spotkit interrupt` picked for its one-off FIS experiment
# On an instance: the handler asked for its replacement (the handler's role may add only this tag).
TAG_REPLACEMENT_REQUESTED = "spotkit:replacement-requested"
# Runbooks: a volume copied to another zone, or restored from a snapshot, names where it came from.
TAG_ORIGIN_VOLUME = "spotkit:origin-volume"
TAG_ORIGIN_SNAPSHOT = "spotkit:origin-snapshot"
TAG_TARGET_AZ = "spotkit:target-az"
TAG_RESTORED_FOR = "spotkit:restored-for"


class TimeFormatError(ValueError):
    """A time this module cannot read; the message names the value and the formats it accepts."""


_ISO = re.compile(
    r"^(?P<y>\d{4})-(?P<mo>\d{2})-(?P<d>\d{2})[Tt ](?P<h>\d{2}):(?P<mi>\d{2})"
    r"(?::(?P<s>\d{2})(?:[.,](?P<frac>\d{1,9}))?)?"
    r"\s*(?P<tz>[Zz]|[+-]\d{2}(?::?\d{2})?)?$")


def parse_time(value: Any) -> datetime:
    """A timezone-aware UTC datetime from what AWS writes.

    Accepts a ``datetime`` (naive = UTC); ISO 8601 with ``Z``, ``+00:00``, ``+0000`` or ``+00`` or no
    offset (naive = UTC, never local time), 0 to 9 fractional digits, ``T`` or a space; and the RFC 2822
    forms of IMDS maintenance events and AWS Health (``21 Jan 2019 09:00:43 GMT``,
    ``Sat, 05 Jun 2027 07:00:00 GMT``). Anything else (numbers, None, other text) raises
    ``TimeFormatError``: callers decide what an unreadable time means.
    """
    if isinstance(value, datetime):
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
    if not isinstance(value, str):
        raise TimeFormatError(f"time {value!r} is a {type(value).__name__}, not an ISO 8601 or RFC 2822 string")
    text = value.strip()
    match = _ISO.match(text)
    if match:
        try:
            return _from_iso_match(match)
        except ValueError as exc:
            raise TimeFormatError(f"time {value!r} is not a valid date and time: {exc}") from None
    try:
        parsed = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        parsed = None
    if parsed is None:
        raise TimeFormatError(f"time {value!r} is neither ISO 8601 (2026-11-29T19:07:00Z) nor RFC 2822 "
                              "(29 Nov 2026 19:07:00 GMT)")
    return parsed.replace(tzinfo=timezone.utc) if parsed.tzinfo is None else parsed.astimezone(timezone.utc)


def _from_iso_match(m: "re.Match[str]") -> datetime:
    frac = (m.group("frac") or "")[:6].ljust(6, "0")
    dt = datetime(int(m.group("y")), int(m.group("mo")), int(m.group("d")), int(m.group("h")), int(m.group("mi")),
                  int(m.group("s") or 0), int(frac))
    tz = m.group("tz")
    if not tz or tz in ("Z", "z"):
        return dt.replace(tzinfo=timezone.utc)
    sign = -1 if tz[0] == "-" else 1
    digits = tz[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:4] or 0)
    if hours > 23 or minutes > 59:
        raise ValueError(f"offset {tz} is out of range")
    offset = timezone(sign * timedelta(hours=hours, minutes=minutes))
    return dt.replace(tzinfo=offset).astimezone(timezone.utc)


def try_parse_time(value: Any) -> Optional[datetime]:
    """``parse_time`` or None."""
    try:
        return parse_time(value)
    except TimeFormatError:
        return None


def format_time(when: datetime) -> str:
    """``2026-11-29T19:07:00Z``: the one way spotkit writes a time (seconds, UTC)."""
    return parse_time(when).strftime("%Y-%m-%dT%H:%M:%SZ")


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def notice_id(kind: str, instance_id: str, key: str = "") -> str:
    """The deterministic id: ``<kind>:<instance>:<12 hex of sha256(kind|instance|key)>``."""
    digest = hashlib.sha256(f"{kind}|{instance_id}|{key}".encode()).hexdigest()[:12]
    return f"{kind}:{instance_id}:{digest}"


def notice_window(when: datetime, seconds: int = NOTICE_WINDOW_SECONDS) -> str:
    """The start of the fixed window holding ``when``, as text (part of a spot notice's key)."""
    epoch = int(parse_time(when).timestamp())
    return format_time(datetime.fromtimestamp(epoch - epoch % seconds, tz=timezone.utc))


def spot_key(action: str, goes_away_at: datetime) -> str:
    """Key of a spot (or capacity-reservation) interruption: the action and the window of its time."""
    return f"{action}|{notice_window(goes_away_at)}"


def rebalance_key(boot: str = "") -> str:
    """Key of a rebalance recommendation: the boot it was issued in (empty when the reader cannot tell)."""
    return f"boot|{boot}"


def spot_deadline_from_warning(sent_at: datetime) -> datetime:
    """EventBridge's spot warning carries when it was sent; the action comes two minutes later."""
    return parse_time(sent_at) + timedelta(seconds=SPOT_NOTICE_SECONDS)
