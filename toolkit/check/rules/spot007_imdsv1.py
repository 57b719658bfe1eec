"""SPOT007: IMDSv1 allowed."""

from __future__ import annotations

from typing import Iterator

from spotkit.check.graph import Resource, ResourceGraph, block, is_unresolved, unknown_block
from spotkit.check.rules.base import GENERAL, SPOT, Rule, Undecided
from spotkit.check.rules.helpers import LAUNCH_TEMPLATES, launch_templates_of, spot_groups, spot_node_groups


RULE = Rule(
    id="SPOT007",
    severity="error",
    title="IMDSv1 allowed",
    description="a launch template, launch configuration or instance allows IMDSv1 (http_tokens not required); a spot "
        "risk where spot capacity launches from it, a general finding elsewhere",
    fix='set metadata_options { http_tokens = "required", http_put_response_hop_limit = 2 }',
    doc="https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/configuring-instance-metadata-service.html",
)


def _spot_launch_specs(graph: ResourceGraph) -> set[tuple[str, str]]:
    """(config, address) of launch templates / configurations that spot capacity launches from."""
    out = set()
    for g in spot_groups(graph):
        for lt in launch_templates_of(graph, g) + graph.resolve(g, "launch_configuration", "aws_launch_configuration"):
            out.add((lt.config, lt.address))
    for n in spot_node_groups(graph):
        for lt in graph.resolve(n, "launch_template", *LAUNCH_TEMPLATES):
            out.add((lt.config, lt.address))
    for f in graph.of_type("aws_spot_fleet_request", "aws_ec2_fleet"):
        for lt in graph.resolve(f, "launch_template_config", *LAUNCH_TEMPLATES) + graph.resolve(f, "launch_template_specification", *LAUNCH_TEMPLATES):
            out.add((lt.config, lt.address))
    return out


def _is_spot_market(r: Resource) -> bool:
    return block(r.values, "instance_market_options").get("market_type") == "spot" or r.type == "aws_spot_instance_request" \
        or (r.type == "aws_launch_configuration" and r.values.get("spot_price") not in (None, ""))


def check(graph: ResourceGraph) -> Iterator:
    """IMDSv1 is a security finding; it is a spot risk only where spot capacity launches (a spot
    instance's replacement reads the same role credentials), else it is general."""
    spot_specs = _spot_launch_specs(graph)
    for r in graph.of_type("aws_launch_template", "aws_launch_configuration", "aws_instance", "aws_spot_instance_request"):
        meta = block(r.values, "metadata_options")
        if str(meta.get("http_endpoint", "enabled")) == "disabled":
            continue
        tokens = meta.get("http_tokens")
        category = SPOT if ((r.config, r.address) in spot_specs or _is_spot_market(r)) else GENERAL
        if unknown_block(r.values, "metadata_options"):
            if category == SPOT:
                yield Undecided(r, f"metadata_options of {r.address} is a dynamic block over a collection not known before apply")
            continue
        if is_unresolved(tokens):
            if category == SPOT:
                yield Undecided(r, f"metadata_options.http_tokens of {r.address} is {tokens}, not known before apply")
            continue
        if tokens != "required":
            yield r, f"{r.address} allows IMDSv1 (metadata_options.http_tokens is {tokens or 'not set, so optional'}): any SSRF can read the instance role's credentials", category
