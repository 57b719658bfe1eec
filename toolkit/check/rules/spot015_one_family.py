"""SPOT015: Spot capacity of one instance family or generation."""

from __future__ import annotations

import re
from typing import Iterator

from spotkit.check.graph import ResourceGraph
from spotkit.check.rules.base import Rule
from spotkit.check.rules.helpers import diverse, instance_types, kind_of


GPU_FAMILY = re.compile(r"^(g\d|p\d|inf\d|trn\d|dl\d|gr\d|vt\d|f\d)")
_GENERATION = re.compile(r"^([a-z]+\d+)")


RULE = Rule(
    id="SPOT015",
    severity="warning",
    title="Spot capacity of one instance family or generation",
    description="the 2+ known instance types of spot capacity (group, node group, fleet) are sizes of one family, or one "
        "generation of one family line (m5, m5a, m5n); GPU families get a GPU-specific hint",
    fix="add instance types from other families and generations of similar size (m6i, m6a, m7i; GPU: g5, g6, g6e)",
    doc="https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/spot-best-practices.html",
)


def family(instance_type: str) -> str:
    return instance_type.split(".", 1)[0]


def generation(instance_type: str) -> str:
    """``m5a.large`` -> ``m5``, ``g4dn.xlarge`` -> ``g4``: the family line and its generation."""
    m = _GENERATION.match(family(instance_type))
    return m.group(1) if m else family(instance_type)


def check(graph: ResourceGraph) -> Iterator:
    for g in diverse(graph):
        types = instance_types(g, graph)
        if not types or len(types) < 2 or any(t.startswith("(") for t in types):
            continue  # a single type is SPOT001's
        families = sorted({family(t) for t in types})
        generations = sorted({generation(t) for t in types})
        gpu = " (GPU capacity is scarce: spread it over a second GPU family or generation, e.g. g5 and g6)" \
            if all(GPU_FAMILY.match(t) for t in types) else ""
        if len(families) == 1:
            yield g, (f"spot {kind_of(g)} {g.address} uses only sizes of one instance family ({families[0]}: {', '.join(types)}): "
                      f"the sizes of one family share hardware and are reclaimed together{gpu}")
        elif len(generations) == 1:
            yield g, (f"spot {kind_of(g)} {g.address} uses one generation of one family line ({', '.join(families)}): "
                      f"they are reclaimed together more often than types from different generations{gpu}")
