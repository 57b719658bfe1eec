"""The ``fallback`` settings of a stack: the automatic on-demand fallback while spot capacity is gone,
and the scheduled return to spot (``toolkit/runtime/interruption/fallback.py`` does the work in the handler).

With ``enabled`` the stack's interruption routing (``spotkit.constructs.interruption_events``) also routes Auto
Scaling's ``EC2 Instance Launch Unsuccessful`` events of its groups (and, for ECS stacks, ECS's
``SERVICE_TASK_PLACEMENT_FAILURE`` service actions of its cluster) to the handler's queue, adds a
scheduled rule that sends the return check every ``check_every_minutes``, and lets the handler change
the groups' on-demand base and their fallback tags.
"""

from __future__ import annotations

from dataclasses import dataclass

from spotkit.errors import ValidationError


@dataclass(frozen=True)
class FallbackSettings:
    """Automatic on-demand fallback and return to spot.

    - ``enabled``: on a spot capacity failure raise the group's on-demand base by its shortfall, and
      return to the original split on a schedule. Default on for ``gpu_inference`` and ``ecs_spot``;
      off, launch failures are still journaled with their reason and nothing changes.
    - ``max_on_demand_base``: the most the on-demand base is raised to (a ceiling on the on-demand bill),
      1 or more. Default 2.
    - ``hold_minutes``: the least time between two changes of the base, so the group does not flap,
      5-1440. Default 30.
    - ``check_every_minutes``: how often the return check runs (a scheduled EventBridge rule), 1-1440,
      at most ``hold_minutes``. Default 10.
    """

    enabled: bool = True
    max_on_demand_base: int = 2
    hold_minutes: int = 30
    check_every_minutes: int = 10

    def environment(self) -> dict[str, str]:
        """The handler's environment (``spotkit.runtime.interruption.lambda_entry.settings_from_env``)."""
        return {"SPOTKIT_FALLBACK": str(self.enabled).lower(),
                "SPOTKIT_FALLBACK_MAX_ON_DEMAND_BASE": str(self.max_on_demand_base),
                "SPOTKIT_FALLBACK_HOLD_MINUTES": str(self.hold_minutes),
                "SPOTKIT_FALLBACK_CHECK_EVERY_MINUTES": str(self.check_every_minutes)}

    @property
    def schedule_expression(self) -> str:
        n = self.check_every_minutes
        return f"rate({n} minute{'s' if n != 1 else ''})"


def validate_fallback(where: str, s: FallbackSettings, *, routed: bool = True) -> None:
    """Raise ``ValidationError`` naming the setting and the fix; ``routed``: the stack routes interruptions."""
    if not s.enabled:
        return
    if not routed:
        raise ValidationError(f"{where}: fallback.enabled needs interruptions (the handler is what acts on launch "
                              "failures): set interruptions, or fallback.enabled=False")
    if s.max_on_demand_base < 1:
        raise ValidationError(f"{where}: fallback.max_on_demand_base must be 1 or more (got {s.max_on_demand_base}); "
                              "to turn the fallback off set fallback.enabled=False")
    if not 5 <= s.hold_minutes <= 1440:
        raise ValidationError(f"{where}: fallback.hold_minutes must be between 5 and 1440 (got {s.hold_minutes}): "
                              "it is the least time between two changes of the on-demand base")
    if not 1 <= s.check_every_minutes <= 1440:
        raise ValidationError(f"{where}: fallback.check_every_minutes must be between 1 and 1440 (got "
                              f"{s.check_every_minutes})")
    if s.check_every_minutes > s.hold_minutes:
        raise ValidationError(f"{where}: fallback.check_every_minutes ({s.check_every_minutes}) is above "
                              f"fallback.hold_minutes ({s.hold_minutes}): the return would wait for the check, not "
                              "the hold; lower check_every_minutes or raise hold_minutes")
