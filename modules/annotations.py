"""Warnings for legal but risky settings: a Python warning (visible in tests and the CLI) and a
cdktn annotation (visible in the synthesized manifest)."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # importing constructs starts jsii; the synth cache replays warnings without it
    from constructs import Construct


class SpotkitWarning(UserWarning):
    """A setting that is allowed but weakens spot safety."""


def warn(scope: Construct, message: str) -> None:
    from cdktn import Annotations

    Annotations.of(scope).add_warning(message)
    warnings.warn(message, SpotkitWarning, stacklevel=3)
