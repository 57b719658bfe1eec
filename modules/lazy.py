"""Values computed at synthesis time, after every construct has had its say.

Constructs expose capabilities (``add_user_data``, ``add_to_role_policy``) that other constructs call
after the resource exists; these producers read the final state when cdktn resolves the stack.
"""

from __future__ import annotations

from typing import Callable

import jsii
from cdktn import IStringProducer, Lazy


@jsii.implements(IStringProducer)
class _StringProducer:
    def __init__(self, fn: Callable[[], str]):
        self._fn = fn

    def produce(self, context):  # noqa: ARG002 - jsii interface
        return self._fn()


def lazy_string(fn: Callable[[], str]) -> str:
    return Lazy.string_value(_StringProducer(fn))

