"""What the handler may touch: the one decision both the single-event and the batch path use.

An event is acted on only when all of these hold (checked in this order, the first that fails is the
reason journaled with the event):

1. **Its account and region are the handler's.** EventBridge stamps ``account`` and ``region`` on every
   event; an event that claims another account or region (a forwarded or forged message, a cross-account
   bus) is *dropped* with the reason, even when an instance of that id exists here. An event that states
   neither (a forwarded spotkit event, an Auto Scaling notification without a group ARN) is not refused
   for it: its instance or group must still pass 2 and 3 in this account.
2. **What it is about is spotkit's.** An instance, or an Auto Scaling group for the capacity events
   (launch failures, ECS placement failures, the fallback return check), must carry ``spotkit:managed=true``
   or a ``spotkit:group`` tag (what every spotkit group and its instances carry). Anything else is
   *ignored*: spotkit never changes a group or instance it does not manage.
3. **It is in the groups asked for.** ``HandlerSettings.groups`` (the stack's groups in the Lambda,
   ``--group`` on the command line): the ``spotkit:group`` value (else the Auto Scaling group name) must
   be one of them when any is given.

``Scope`` reads nothing itself: the caller passes what it described (one DescribeInstances or
DescribeAutoScalingGroups for a whole batch), so the single-event path (a batch of one) and a batch of
ten decide the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

from spotkit.runtime.notice import ASG_NAME_TAG, TAG_GROUP, TAG_MANAGED


@dataclass(frozen=True)
class Verdict:
    """``act``: go ahead; else ``status`` says how the event ends (``ignored`` or ``dropped``) and
    ``reason`` why. ``group``: the spotkit group (or Auto Scaling group) the event is about, when known."""

    act: bool
    group: str = ""
    reason: str = ""
    status: str = ""


IGNORED = "ignored"
DROPPED = "dropped"


def tags_of(resource: Optional[Mapping]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in (resource or {}).get("Tags", []) or []
            if isinstance(t, Mapping) and "Key" in t and "Value" in t}


@dataclass(frozen=True)
class Scope:
    """The handler's own account and region, and the groups it acts for (empty: every spotkit group)."""

    account: str = ""
    region: str = ""
    groups: tuple[str, ...] = ()

    def foreign(self, account: str, region: str) -> str:
        """The reason an event from ``account``/``region`` is not this handler's, or ``""``."""
        if account and self.account and account != self.account:
            return (f"the event is from account {account}, not this handler's account {self.account}: "
                    "dropped (an event from another account is never acted on here)")
        if region and self.region and region != self.region:
            return (f"the event is from region {region}, not this handler's region {self.region}: dropped "
                    "(each region has its own handler)")
        return ""

    def _group_check(self, what: str, tags: Mapping[str, str], fallback_group: str) -> Verdict:
        group = tags.get(TAG_GROUP, "") or tags.get(ASG_NAME_TAG, "") or fallback_group
        if tags.get(TAG_MANAGED) != "true" and TAG_GROUP not in tags:
            return Verdict(False, group, f"{what} is not managed by spotkit (no {TAG_MANAGED}=true or "
                                         f"{TAG_GROUP} tag)", IGNORED)
        if self.groups and group not in self.groups:
            return Verdict(False, group, f"{what} is in group {group!r}, not one of {', '.join(self.groups)}",
                           IGNORED)
        return Verdict(True, group)

    def _about(self, what: str, described: Optional[Mapping], group: str, account: str, region: str) -> Verdict:
        """Rules 1 to 3 for ``what`` (``described``: its description, None when it was not found)."""
        reason = self.foreign(account, region)
        if reason:
            return Verdict(False, group, reason, DROPPED)
        if described is None:
            return Verdict(False, group, f"{what} does not exist in this account and region", IGNORED)
        return self._group_check(what, tags_of(described), group)

    def instance(self, instance_id: str, described: Optional[Mapping], *, account: str = "", region: str = "",
                 group_hint: str = "") -> Verdict:
        """An event about an instance: ``described`` is its DescribeInstances entry (None: not found)."""
        return self._about(f"instance {instance_id}", described, group_hint, account, region)

    def group(self, name: str, described: Optional[Mapping], *, account: str = "", region: str = "") -> Verdict:
        """An event about an Auto Scaling group: ``described`` is its DescribeAutoScalingGroups entry."""
        return self._about(f"Auto Scaling group {name!r}", described, name, account, region)

    def groups_of(self, described: Sequence[Mapping]) -> list[str]:
        """The names of the described Auto Scaling groups this handler may change (rule 2 and 3)."""
        return sorted(g["AutoScalingGroupName"] for g in described
                      if self._group_check("", tags_of(g), g["AutoScalingGroupName"]).act)
