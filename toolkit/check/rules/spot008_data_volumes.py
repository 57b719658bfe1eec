"""SPOT008: Data volumes deleted on termination without a snapshot policy."""

from __future__ import annotations

from typing import Iterator

from spotkit.check.graph import Resource, ResourceGraph, as_list, block, blocks, is_unresolved, unknown_block
from spotkit.check.rules.base import Rule, Undecided
from spotkit.check.rules.helpers import as_bool, launch_templates_of, spot_groups


ROOT_DEVICES = ("/dev/xvda", "/dev/sda1", "/dev/sda", "/dev/nvme0n1", "/dev/xvda1")


RULE = Rule(
    id="SPOT008",
    severity="warning",
    title="Data volumes deleted on termination without a snapshot policy",
    description="a spot group's launch template deletes a data (non-root) volume on termination and no enabled DLM "
        "policy targets its volume tags",
    fix="set ebs.delete_on_termination = false on data volumes, or add an aws_dlm_lifecycle_policy whose target_tags match their volume tags",
    doc="https://docs.aws.amazon.com/ebs/latest/userguide/snapshot-lifecycle.html",
)


def volume_tags(lt: Resource) -> dict:
    tags: dict = {}
    for spec in blocks(lt.values, "tag_specifications"):
        if spec.get("resource_type") == "volume" and isinstance(spec.get("tags"), dict):
            tags.update(spec["tags"])
    return tags


def snapshot_policies_for(lt: Resource, graph: ResourceGraph) -> list[Resource]:
    tags = volume_tags(lt)
    out = []
    for policy in graph.same_config(lt, "aws_dlm_lifecycle_policy"):
        if str(policy.values.get("state", "ENABLED")) == "DISABLED":
            continue
        details = block(policy.values, "policy_details")
        kinds = [str(k) for k in as_list(details.get("resource_types"))] or ["VOLUME"]
        if not ({"VOLUME", "INSTANCE"} & set(kinds)):
            continue
        wanted = details.get("target_tags")
        if isinstance(wanted, dict) and not any(is_unresolved(v) for v in wanted.values()):
            if not all(tags.get(k) == v for k, v in wanted.items()):
                continue
        out.append(policy)
    return out


def data_volumes_deleted(lt: Resource) -> list[str]:
    devices = []
    for mapping in blocks(lt.values, "block_device_mappings"):
        ebs = block(mapping, "ebs")
        device = str(mapping.get("device_name", ""))
        if not ebs or device in ROOT_DEVICES:
            continue
        if as_bool(ebs.get("delete_on_termination"), True):  # new EBS volumes are deleted on termination by default
            devices.append(device)
    return devices


def check(graph: ResourceGraph) -> Iterator:
    seen = set()
    for g in spot_groups(graph):
        for lt in launch_templates_of(graph, g):
            if (lt.config, lt.file, lt.address) in seen:
                continue
            seen.add((lt.config, lt.file, lt.address))
            if unknown_block(lt.values, "block_device_mappings"):
                yield Undecided(lt, f"the block_device_mappings of {lt.address} come from a dynamic block over a collection "
                                    "not known before apply: could not tell whether data volumes are deleted")
                continue
            devices = data_volumes_deleted(lt)
            if devices and not snapshot_policies_for(lt, graph):
                yield lt, (f"{lt.address} deletes data volume(s) {', '.join(devices)} when a spot instance is terminated, "
                           "and no DLM snapshot policy targets their tags: their data is lost on interruption")
