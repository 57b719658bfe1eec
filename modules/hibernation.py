"""Hibernation: what AWS requires, checked before any resource exists, and the options that turn it on.

Where hibernation helps spot work (an Auto Scaling group can only *terminate* a spot instance):
- a warm pool in ``Hibernated`` state beside a group (AWS allows warm pools only on groups that launch
  On-Demand instances from one launch template, so this is the on-demand standby that refills fast after
  the spot fleet is reclaimed), with instances returned to the pool on scale-in;
- a standalone persistent spot instance (``spotkit.constructs.spot_instance``) whose interruption behaviour is
  ``hibernate`` (RAM kept on the root volume) or ``stop``.

Rules (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/hibernating-prerequisites.html):
- the root volume is EBS and encrypted;
- the root volume holds the RAM image plus the OS and applications: spotkit sizes it from
  ``spotkit.constructs.instance_table`` (RAM of the largest type + ``os_and_apps_gib``) or takes an explicit size;
- RAM is at most 150 GiB;
- the instance type supports hibernation (per-type flag in ``spotkit.constructs.instance_table``; accelerated
  families such as g4dn/g5/g6/p4d/p5/inf2/trn1 do not, bare-metal sizes do not).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

from spotkit.constructs.checks import require_at_least
from spotkit.constructs.instance_table import INSTANCE_TYPES
from spotkit.errors import ValidationError

MAX_HIBERNATION_RAM_GIB = 150
WARM_POOL_STATES = ("Hibernated", "Stopped", "Running")
# Families that support hibernation in the shipped table, for fix-it messages.
SUGGESTED_FAMILIES = ("m6i", "m6a", "m7i", "c6i", "c7i", "r5", "r7i", "t3")


@dataclass(frozen=True)
class HibernationSettings:
    """Launch-template hibernation.

    - ``enabled``: set ``hibernation_options.configured``. Default off.
    - ``os_and_apps_gib``: root-volume room for the OS and applications besides the RAM image. Default 20.
    - ``root_volume_size_gib``: explicit root size. Default: sized from the shipped table as
      RAM of the largest instance type + ``os_and_apps_gib`` (or the group's root size if larger);
      required for instance types the table does not know.
    """

    enabled: bool = False
    os_and_apps_gib: int = 20
    root_volume_size_gib: Optional[int] = None


@dataclass(frozen=True)
class WarmPoolSettings:
    """A warm pool beside an Auto Scaling group.

    - ``pool_state``: Hibernated (default; needs ``hibernation.enabled``), Stopped or Running.
    - ``min_size``: instances kept in the pool. Default 1.
    - ``max_group_prepared_capacity``: cap on pool + group. Default: none (the group's max_size).
    - ``reuse_on_scale_in``: return instances to the pool on scale-in instead of terminating. Default on.
    """

    pool_state: str = "Hibernated"
    min_size: int = 1
    max_group_prepared_capacity: Optional[int] = None
    reuse_on_scale_in: bool = True


def memory_gib(instance_type: str) -> Optional[float]:
    """RAM of an instance type in GiB from the shipped table, or None when the table does not know it."""
    row = INSTANCE_TYPES.get(instance_type)
    return row[0] / 1024 if row else None


def supports_hibernation(instance_type: str) -> Optional[bool]:
    row = INSTANCE_TYPES.get(instance_type)
    return row[1] if row else None


def required_root_gib(instance_types: Sequence[str], os_and_apps_gib: int) -> Optional[int]:
    """RAM of the largest type (rounded up) + the OS allowance; None when a type is unknown."""
    sizes = [memory_gib(t) for t in instance_types]
    if not sizes or any(s is None for s in sizes):
        return None
    return int(math.ceil(max(sizes))) + os_and_apps_gib


def hibernation_root_size(instance_types: Sequence[str], settings: HibernationSettings, base_root_gib: int) -> int:
    """The root volume size to launch with when hibernation is on (validated before)."""
    if settings.root_volume_size_gib is not None:
        return settings.root_volume_size_gib
    need = required_root_gib(instance_types, settings.os_and_apps_gib) or base_root_gib
    return max(base_root_gib, need)


def validate_hibernation(where: str, instance_types: Sequence[str], settings: HibernationSettings, *,
                         root_encrypted: bool, prefix: str = "hibernation") -> None:
    """Raise ValidationError for the first AWS hibernation prerequisite the settings break."""
    if not settings.enabled:
        return
    if not root_encrypted:
        raise ValidationError(
            f"{where}: {prefix}.enabled needs an encrypted root volume (AWS writes RAM to it): "
            "set root_volume_encrypted=true or turn hibernation off"
        )
    if not instance_types:
        raise ValidationError(
            f"{where}: {prefix}.enabled needs explicit instance_types (attribute-based instance_requirements "
            "cannot be checked against the hibernation prerequisites): list the instance types"
        )
    if settings.os_and_apps_gib < 1:
        raise ValidationError(f"{where}: {prefix}.os_and_apps_gib must be at least 1 (got {settings.os_and_apps_gib})")
    unknown = [t for t in instance_types if t not in INSTANCE_TYPES]
    if unknown and settings.root_volume_size_gib is None:
        raise ValidationError(
            f"{where}: {prefix}.enabled with instance type(s) spotkit's memory table does not know "
            f"({', '.join(unknown)}): set {prefix}.root_volume_size_gib to at least their RAM + "
            f"{settings.os_and_apps_gib} GiB for the OS"
        )
    too_big = [t for t in instance_types if (memory_gib(t) or 0) > MAX_HIBERNATION_RAM_GIB]
    if too_big:
        detail = ", ".join(f"{t} has {memory_gib(t):g} GiB" for t in too_big)
        raise ValidationError(
            f"{where}: {prefix}.enabled: AWS hibernates instances with at most {MAX_HIBERNATION_RAM_GIB} GiB "
            f"of RAM ({detail}): choose smaller instance types or turn hibernation off"
        )
    unsupported = [t for t in instance_types if supports_hibernation(t) is False]
    if unsupported:
        raise ValidationError(
            f"{where}: {prefix}.enabled: instance type(s) {', '.join(unsupported)} do not support hibernation "
            f"(accelerated and bare-metal types do not): choose a supported family such as "
            f"{', '.join(SUGGESTED_FAMILIES)}, or use interruption behaviour 'stop' / warm pool state 'Stopped' "
            "with hibernation off"
        )
    need = required_root_gib([t for t in instance_types if t in INSTANCE_TYPES], settings.os_and_apps_gib)
    if settings.root_volume_size_gib is not None and need is not None and settings.root_volume_size_gib < need:
        largest = max((t for t in instance_types if t in INSTANCE_TYPES), key=lambda t: memory_gib(t) or 0)
        raise ValidationError(
            f"{where}: {prefix}.root_volume_size_gib ({settings.root_volume_size_gib}) is below RAM + OS: "
            f"{largest} has {memory_gib(largest):g} GiB of RAM, plus {settings.os_and_apps_gib} GiB for the OS "
            f"needs at least {need} GiB: raise {prefix}.root_volume_size_gib or leave it unset to size it from the table"
        )


def validate_warm_pool(where: str, warm_pool: Optional[WarmPoolSettings], *, hibernation_enabled: bool,
                       uses_spot: bool, instance_type_count: int, uses_requirements: bool, max_size: int) -> None:
    """Group rules: hibernation only where Auto Scaling can use it; warm pool state, sizes, hibernation for the
    Hibernated state, and AWS's on-demand-only limit for warm pools."""
    if hibernation_enabled and uses_spot:
        raise ValidationError(
            f"{where}: hibernation.enabled on a group that launches Spot Instances: Auto Scaling can only "
            "terminate spot instances, never hibernate them. Use hibernation with a warm_pool on an on-demand "
            "group (on_demand_percentage_above_base=100), or a PersistentSpotInstance with interruption "
            "behaviour 'hibernate'"
        )
    if warm_pool is None:
        return
    if warm_pool.pool_state not in WARM_POOL_STATES:
        raise ValidationError(
            f"{where}: warm_pool.pool_state {warm_pool.pool_state!r} is not accepted by AWS: use one of "
            f"{', '.join(WARM_POOL_STATES)}"
        )
    if warm_pool.pool_state == "Hibernated" and not hibernation_enabled:
        raise ValidationError(
            f"{where}: warm_pool.pool_state 'Hibernated' needs hibernation.enabled=true (instances must be "
            "launched with hibernation configured): enable hibernation or use pool_state 'Stopped'"
        )
    if uses_spot or uses_requirements or instance_type_count != 1:
        raise ValidationError(
            f"{where}: AWS does not allow a warm pool on a group that launches Spot Instances or uses a mixed "
            "instances policy: set on_demand_percentage_above_base=100 and exactly one instance type (an "
            "on-demand standby beside the spot fleet), or remove warm_pool"
        )
    require_at_least(where, "warm_pool.min_size", warm_pool.min_size, 0)
    cap = warm_pool.max_group_prepared_capacity
    if cap is not None and cap != -1 and cap < warm_pool.min_size:
        raise ValidationError(
            f"{where}: warm_pool.max_group_prepared_capacity ({cap}) is below warm_pool.min_size "
            f"({warm_pool.min_size}): raise the cap or lower min_size"
        )
    if max_size < 1:
        raise ValidationError(f"{where}: warm_pool needs max_size of 1 or more (got {max_size})")
