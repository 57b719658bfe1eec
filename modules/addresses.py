"""Keep a resource's Terraform address when a construct is reorganized: cdktn derives a resource's address
(``type.logical_id``) from its construct path, so moving it into a sub-construct would give it a new one,
and Terraform would destroy the deployed resource and create another. ``keep_address`` gives the resource
the logical id it had (``id_`` directly in ``scope``), so the synthesized JSON names it as before: a plan
against an existing state shows no change at all, and tools that read the JSON (checkov, which cannot
parse Terraform's ``moved`` blocks in ``.tf.json``) see the same document.

``logical_id`` is cdktn's ``makeUniqueId`` (``cdktn/lib/private/unique.ts``, not exported; cdktn's own
``MigrateIds`` keeps a copy of its previous version the same way): the construct ids below the stack,
``Default`` left out; one component is used as it is, otherwise the human-readable ids (a component that
the previous one ends with, and ``Resource``, left out) joined by ``_``, then the first 8 hex digits of the
MD5 of the whole path. tests/test_logical_ids.py checks it against the engine for every resource of a
stack. A stack that overrides ``allocate_logical_id`` names its resources otherwise: there this helper
gives the engine's default id, not the stack's.
"""

from __future__ import annotations

import hashlib
import re

from constructs import Construct

_HIDDEN = "Default"              # left out of the path altogether
_HIDDEN_FROM_HUMAN = "Resource"  # left out of the readable part, kept in the hash
_MAX_ID = 255
_MAX_HUMAN = 240


def _allowed(component: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "", component)


def _without_repeats(components: list[str]) -> list[str]:
    """Leave out a component that the previous one ends with (``queue``/``queue`` reads ``queue``)."""
    out: list[str] = []
    for c in components:
        if not out or not out[-1].endswith(c):
            out.append(c)
    return out


def unique_id(components: list[str]) -> str:
    """cdktn's logical id for a construct path below the stack (``["interruptions", "queue"]``)."""
    components = [c for c in components if c != _HIDDEN]
    if len(components) == 1 and len(_allowed(components[0])) <= _MAX_ID:
        return _allowed(components[0])
    digest = hashlib.md5("/".join(components).encode(), usedforsecurity=False).hexdigest()[:8].upper()
    human = "_".join(_allowed(c) for c in _without_repeats(components) if c != _HIDDEN_FROM_HUMAN)[:_MAX_HUMAN]
    return f"{human}_{digest}"


def logical_id(scope: Construct, id_: str) -> str:
    """The logical id cdktn gives a Terraform element with id ``id_`` directly in ``scope``."""
    from cdktn import TerraformStack

    scopes = scope.node.scopes
    below_stack = scopes[scopes.index(TerraformStack.of(scope)) + 1:]
    return unique_id([c.node.id for c in below_stack] + [id_])


def keep_address(resource, scope: Construct, id_: str):
    """Give ``resource`` the logical id (so the address) of an element ``id_`` directly in ``scope``;
    returns ``resource``."""
    resource.override_logical_id(logical_id(scope, id_))
    return resource
