"""The training stack: defaults synthesize; created VPC or bring-your-own subnets."""

from __future__ import annotations

import dataclasses

import pytest

from spotkit.constructs.network import NetworkSettings
from spotkit.stacks.training import TrainingConfig, TrainingStack
from tests.support.synth import build_stack, one, resources
from spotkit.errors import ValidationError


@pytest.fixture(scope="module")
def default_stack():
    doc, _ = build_stack(TrainingStack, TrainingConfig())
    return doc


def test_defaults_create_a_vpc_with_a_private_subnet_per_az(default_stack):
    subnets = resources(default_stack, "aws_subnet")
    private = [s for s in subnets.values() if s["tags"]["spotkit:tier"] == "private"]
    assert len(private) == 2
    (azs_id,) = default_stack["data"]["aws_availability_zones"]
    assert sorted(s["availability_zone"] for s in private) == [
        f"${{element(data.aws_availability_zones.{azs_id}.names, 0)}}",
        f"${{element(data.aws_availability_zones.{azs_id}.names, 1)}}",
    ]
    asg = one(default_stack, "aws_autoscaling_group")
    assert len(asg["vpc_zone_identifier"]) == 2
    assert one(default_stack, "aws_vpc")["cidr_block"] == "10.42.0.0/16"


def test_provider_pinned_to_supported_range(default_stack):
    assert default_stack["terraform"]["required_providers"]["aws"] == {"source": "hashicorp/aws", "version": ">= 5.100, < 7"}
    (provider,) = default_stack["provider"]["aws"]
    assert provider["region"] == "us-east-1"
    assert provider["default_tags"][0]["tags"]["spotkit:stack"] == "stack"


def test_bring_your_own_subnets_creates_no_vpc():
    cfg = dataclasses.replace(TrainingConfig(), network=NetworkSettings(vpc_id="vpc-123", subnet_ids=("subnet-1", "subnet-2", "subnet-3")))
    doc, _ = build_stack(TrainingStack, cfg)
    assert resources(doc, "aws_vpc") == {}
    assert resources(doc, "aws_subnet") == {}
    assert one(doc, "aws_autoscaling_group")["vpc_zone_identifier"] == ["subnet-1", "subnet-2", "subnet-3"]
    # the fleet's and the EFS checkpoints' security groups both live in the given VPC
    assert sorted(sg["vpc_id"] for sg in resources(doc, "aws_security_group").values()) == ["vpc-123", "vpc-123"]
    assert sorted(t["subnet_id"] for t in resources(doc, "aws_efs_mount_target").values()) == ["subnet-1", "subnet-2", "subnet-3"]


def test_vpc_id_without_subnets_is_rejected():
    cfg = dataclasses.replace(TrainingConfig(), network=NetworkSettings(vpc_id="vpc-123"))
    with pytest.raises(ValidationError) as err:
        build_stack(TrainingStack, cfg)
    assert str(err.value) == (
        "network: vpc_id and subnet_ids go together: give both to bring your own network, or neither to create one"
    )


def test_one_az_is_rejected():
    cfg = dataclasses.replace(TrainingConfig(), network=NetworkSettings(az_count=1))
    with pytest.raises(ValidationError) as err:
        build_stack(TrainingStack, cfg)
    assert str(err.value) == (
        "network.az_count must be 2 or more (got 1): spot capacity is reclaimed per AZ, so one AZ can take the whole fleet"
    )
