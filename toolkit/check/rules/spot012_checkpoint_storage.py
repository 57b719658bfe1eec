"""SPOT012: Checkpoints on instance storage only."""

from __future__ import annotations

from typing import Iterator

from spotkit.check.graph import Resource, ResourceGraph, block, blocks
from spotkit.check.rules.base import Rule
from spotkit.check.rules.helpers import (as_bool, capacity_providers_for, launch_templates_of, spot_groups,
                                         target_groups_of)


DURABLE_STORAGE = ("aws_efs_file_system", "aws_efs_mount_target", "aws_fsx_lustre_file_system",
                   "aws_fsx_openzfs_file_system", "aws_fsx_ontap_file_system", "aws_s3_bucket", "aws_ebs_volume")


RULE = Rule(
    id="SPOT012",
    severity="warning",
    title="Checkpoints on instance storage only",
    description="a spot group that serves nothing (no target group, no ECS provider) has no durable place for "
        "checkpoints: no EFS/FSx, S3 bucket or s3:PutObject grant, kept EBS volume",
    fix="mount EFS/FSx, keep a data EBS volume (delete_on_termination = false), or grant write access to an S3 bucket for checkpoints",
    doc="https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/spot-interruptions.html",
)


def _serving(group: Resource, graph: ResourceGraph) -> bool:
    return bool(target_groups_of(group, graph) or group.values.get("load_balancers") or capacity_providers_for(group, graph))


def check(graph: ResourceGraph) -> Iterator:
    for g in spot_groups(graph):
        if _serving(g, graph):
            continue  # serving groups keep no checkpoints
        if graph.same_config(g, *DURABLE_STORAGE):
            continue
        lts = launch_templates_of(graph, g)
        if any(as_bool(block(m, "ebs").get("delete_on_termination"), True) is False for lt in lts for m in blocks(lt.values, "block_device_mappings")):
            continue
        policies = graph.same_config(g, "aws_iam_role_policy", "aws_iam_policy")
        if any("s3:PutObject" in str(p.values.get("policy", "")) or "s3:*" in str(p.values.get("policy", "")) for p in policies):
            continue
        if any("ec2:AttachVolume" in str(p.values.get("policy", "")) for p in policies):
            continue  # the instances attach a kept EBS volume themselves (spotkit's data volumes claim it at boot)
        if any("AmazonS3FullAccess" in str(a.values.get("policy_arn", "")) for a in graph.same_config(g, "aws_iam_role_policy_attachment")):
            continue
        yield g, (f"spot group {g.address} has no durable place for checkpoints in this configuration (no EFS/FSx, S3 bucket or write "
                  "access, kept EBS volume): checkpoints on instance storage vanish with the instance")
