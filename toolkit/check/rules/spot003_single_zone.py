"""SPOT003: Spot capacity in a single availability zone."""

from __future__ import annotations

from typing import Iterator

from spotkit.check.graph import Resource, ResourceGraph, blocks, is_unresolved, references_in, unknown_block
from spotkit.check.rules.base import Rule, Undecided
from spotkit.check.rules.helpers import EC2_FLEET, SPOT_FLEET, SPOT_REQUEST, diverse, kind_of


RULE = Rule(
    id="SPOT003",
    severity="error",
    title="Spot capacity in a single availability zone",
    description="the subnets of a spot group, node group, fleet or spot instance request are in one availability zone "
        "(two subnets of one zone count as one; a fleet entry without subnet or zone launches in one)",
    fix="put subnets of at least 2 availability zones in vpc_zone_identifier (node groups: subnet_ids; fleets: overrides "
        "with subnet_id or availability_zone in 2+ zones)",
    doc="https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/spot-best-practices.html",
)


def _subnet_zone(owner: Resource, subnet: str, graph: ResourceGraph) -> set[str] | None:
    """The zones of one subnet value: a subnet resource's availability zone, or the id itself (one zone)."""
    if not isinstance(subnet, str) or "*" in subnet or "module." in subnet:
        return None
    targets = [r for r in graph.resources if r.config == owner.config and r.type == "aws_subnet" and r.base in references_in(subnet)]
    if targets:
        return {str(t.values.get("availability_zone") or t.values.get("availability_zone_id") or t.address) for t in targets}
    if is_unresolved(subnet):
        return {subnet}  # one unresolved subnet: one zone, as for groups
    return {s.strip() for s in subnet.split(",") if s.strip()}  # spot fleets take "subnet-a, subnet-b"


def fleet_zone_count(fleet: Resource, graph: ResourceGraph) -> int | None:
    """Availability zones a fleet or spot request can launch in (None when not known before apply).
    An entry without a subnet or zone launches where its launch template says, or in the default
    subnet: one zone."""
    if fleet.type == SPOT_REQUEST:
        return 1
    label = "overrides" if fleet.type == SPOT_FLEET else "override"
    if unknown_block(fleet.values, "launch_specification") or unknown_block(fleet.values, "launch_template_config"):
        return None
    entries: list[dict] = list(blocks(fleet.values, "launch_specification"))
    for cfg in blocks(fleet.values, "launch_template_config"):
        if unknown_block(cfg, label):
            return None
        entries += blocks(cfg, label) or [{}]
    zones: set[str] = set()
    for e in entries or [{}]:
        az, subnet = e.get("availability_zone"), e.get("subnet_id")
        if az is not None:
            if is_unresolved(az):
                return None
            zones.add(str(az))
        elif subnet is not None:
            found = _subnet_zone(fleet, subnet, graph)
            if found is None:
                return None
            zones |= found
        else:
            zones.add("(launch template or default subnet)")
    return len(zones)


def zone_count(group: Resource, graph: ResourceGraph) -> int | None:
    if group.type in (SPOT_FLEET, EC2_FLEET, SPOT_REQUEST):
        return fleet_zone_count(group, graph)
    if group.type == "aws_eks_node_group":
        group = Resource(group.type, group.name, group.address, {"vpc_zone_identifier": group.values.get("subnet_ids")},
                         group.file, group.refs, {"vpc_zone_identifier": group.attr_refs.get("subnet_ids", set())})
    azs = group.values.get("availability_zones")
    if isinstance(azs, list) and azs and not any(is_unresolved(a) for a in azs):
        return len(set(azs))
    subnets = group.values.get("vpc_zone_identifier")
    if isinstance(subnets, list) and subnets:
        zones: set[str] = set()
        for s in subnets:
            if not isinstance(s, str) or "*" in s or "module." in s:
                return None  # a splat or a module output can hold any number of subnets
            targets = [r for r in graph.resources if r.config == group.config and r.type == "aws_subnet" and r.base in references_in(s)]
            if targets:
                zones |= {str(t.values.get("availability_zone") or t.values.get("availability_zone_id") or t.address) for t in targets}
            else:
                zones.add(s)  # a subnet id or one unresolved subnet: counted as its own zone
        return len(zones)
    # plan JSON: subnet ids are computed; count the referenced subnets (each count index is a resource)
    refs = group.attr_refs.get("vpc_zone_identifier", set())
    if refs and all(r.startswith("aws_subnet.") for r in refs):
        subnet_res = [r for r in graph.resources if r.config == group.config and r.base in refs]
        if subnet_res:
            return len({str(s.values.get("availability_zone") or s.values.get("availability_zone_id") or id(s)) for s in subnet_res})
    return None


def check(graph: ResourceGraph) -> Iterator:
    for g in diverse(graph):
        n = zone_count(g, graph)
        if n is None:
            yield Undecided(g, f"the subnets of spot {kind_of(g)} {g.address} are not known before apply (a module output, splat "
                               "or expression): could not count its availability zones")
        if n is not None and n < 2:
            yield g, f"spot {kind_of(g)} {g.address} uses a single availability zone: one zone's spot pools are all it can draw from"
