"""Spot-safety rules over a normalized resource graph, written from the Terraform AWS provider schema
(hashicorp/aws 5.x), not from spotkit's own constructs, so they judge any configuration.

One rule per file, as checkov does: ``spotNNN_<what>.py`` holds the rule's metadata, ``RULE`` (id,
severity, title, description, fix, docs link; see ``base.Rule``), and beside it its ``check(graph)``.
This registry collects those files in id order, each ``RULE`` with its ``check``; the rule reference page (``docs/hooks/rules.py``) and SARIF's rule
descriptors are generated from it. What several rules share is in ``helpers``. A rule never fires on a
value it cannot know (an unresolved ``${...}`` expression or a value computed at apply time): it says
UNDECIDED rather than guess.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from dataclasses import replace

from spotkit.check.rules.base import GENERAL, SEVERITIES, SPOT, Hit, Rule, Undecided
from spotkit.check.rules.helpers import launch_templates_of, maybe_spot_capacity, spot_capacity
from spotkit.runtime.notice import TAG_SKIP_CHECK

_RULE_FILE = re.compile(r"^(spot\d{3})_\w+$")


def _collect() -> tuple[Rule, ...]:
    """The ``RULE`` of every ``spotNNN_*`` module of this package with the module's ``check``, in id
    order; a rule whose id is not its file's is a programming error (the file name is how a reader
    finds a rule)."""
    found = []
    for info in pkgutil.iter_modules(__path__):
        m = _RULE_FILE.match(info.name)
        if not m:
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        rule = replace(module.RULE, check=module.check)
        if rule.id.lower() != m.group(1) or rule.severity not in SEVERITIES:
            raise RuntimeError(f"{info.name}.py defines {rule.id} with severity {rule.severity!r}: "
                               f"a rule file holds the rule its name says, of severity {' | '.join(SEVERITIES)}")
        found.append(rule)
    return tuple(sorted(found, key=lambda r: r.id))


RULES: tuple[Rule, ...] = _collect()
RULES_BY_ID = {r.id: r for r in RULES}

INVALID_SUPPRESSION = Rule("SPOT000", "error", "Invalid suppression",
                           f"write 'RULE_ID: reason' (tag {TAG_SKIP_CHECK}, or check.suppress[].reason in the config)",
                           lambda graph: (), description="a suppression has no reason or names no rule")

_ID = re.compile(r"^(SPOT\d{3}|CKV2?_[A-Z0-9_]+)$")


def is_rule_id(text: str) -> bool:
    return bool(_ID.match(text))


__all__ = ["RULES", "RULES_BY_ID", "INVALID_SUPPRESSION", "is_rule_id", "Rule", "Undecided", "Hit", "SPOT", "GENERAL",
           "SEVERITIES", "spot_capacity", "maybe_spot_capacity", "launch_templates_of"]
