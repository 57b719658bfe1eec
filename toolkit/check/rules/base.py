"""What a spot rule is: its metadata (id, severity, title, description, fix, docs link) and its check,
a function ``graph -> hits``. Every rule file (``spotNNN_*.py``) holds, as checkov's checks do, its
metadata first (``RULE``) and then its ``check(graph)``, which the registry (``spotkit.check.rules``)
attaches to it.

A hit is ``(resource, message)``, or ``(resource, message, category, fix)`` where one finding needs its
own category or fix, or an ``Undecided`` when a value the rule needs is not known before apply.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

from spotkit.check.graph import Resource, ResourceGraph

SEVERITIES = ("error", "warning", "info")
SPOT, GENERAL = "spot", "general"  # finding categories: spot risks, and general (security) findings
Hit = tuple[Resource, str]


@dataclass(frozen=True)
class Undecided:
    """A rule could not decide: a value it needs is unknown before apply (a variable without a
    default, a function call, a module output...). Reported, never counted as a failure."""
    resource: Resource
    message: str


@dataclass(frozen=True)
class Rule:
    id: str
    severity: str
    title: str
    fix: str
    check: Callable[[ResourceGraph], Iterable[Hit]] | None = None  # None in a rule file's RULE: the registry attaches check()
    doc: str | None = None
    category: str = SPOT
    description: str = ""  # what fires the rule, for the rule reference (docs) and SARIF's fullDescription

    @property
    def help_uri(self) -> str | None:
        """The AWS (or Karpenter) page behind the rule's advice."""
        return self.doc
