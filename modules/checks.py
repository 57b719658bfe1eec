"""Checks shared by the constructs' validators, so one kind of mistake reads the same everywhere."""

from __future__ import annotations

from spotkit.errors import ValidationError


def require_at_least(where: str, field: str, value: int, minimum: int) -> None:
    """Raise ``<where>: <field> must be <minimum> or more (got <value>)`` when ``value`` is below ``minimum``."""
    if value < minimum:
        raise ValidationError(f"{where}: {field} must be {minimum} or more (got {value})")
