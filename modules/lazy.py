"""Values computed at synthesis time, after every construct has had its say.

Constructs expose capabilities (``add_user_data``, ``add_to_role_policy``) that other constructs call
after the resource exists; these producers read the final state when cdktn resolves the stack.
"""

from __future__ import annotations

from typing import Any, Callable

import jsii
from cdktn import IAnyProducer, IStringProducer, Lazy


@jsii.implements(IStringProducer)
class _StringProducer:
    def __init__(self, fn: Callable[[], str]):
        self._fn = fn

    def produce(self, context):  # noqa: ARG002 - jsii interface
        return self._fn()


@jsii.implements(IAnyProducer)
class _AnyProducer:
    def __init__(self, fn: Callable[[], Any]):
        self._fn = fn

    def produce(self, context):  # noqa: ARG002 - jsii interface
        return self._fn()


def lazy_string(fn: Callable[[], str]) -> str:
    return Lazy.string_value(_StringProducer(fn))


def lazy_any(fn: Callable[[], Any]):
    return Lazy.any_value(_AnyProducer(fn))
