"""End-to-end tier: every registered stack through real ``terraform init/plan/apply/destroy`` against the
embedded AWS emulator (a moto server started by ``spotkit local``'s own code, one per test), then boto3
calls that check what exists. Parametrized over ``spotkit.stacks.registry.STACKS``, so new stacks are covered.

Needs the terraform binary and the hashicorp/aws provider (from a mirror: SPOTKIT_PROVIDER_MIRROR or the
well-known folders, e.g. /opt/tf-plugins); skips with the reason otherwise.
"""

from __future__ import annotations

import json
import shutil

import boto3
import pytest
from click.testing import CliRunner

from spotkit.stacks import registry
from tests.support.network import free_port
from spotkit.cli.main import cli
from spotkit.deploy import mirror
from spotkit.rehearsal.local import emulator

TERRAFORM = shutil.which("terraform") or shutil.which("tofu")
MIRROR = mirror.discover()
pytestmark = [
    pytest.mark.terraform,
    pytest.mark.skipif(TERRAFORM is None, reason="terraform/tofu not on PATH (install Terraform >= 1.5)"),
    pytest.mark.skipif(MIRROR is None, reason="no hashicorp/aws provider mirror in /opt/tf-plugins, "
                                              "~/.terraform.d/plugins or /usr/share/terraform/plugins"),
]


@pytest.fixture()
def local(tmp_path, monkeypatch):
    """A project directory with its own running emulator; stopped afterwards."""
    project = tmp_path / ".spotkit"
    monkeypatch.setenv("SPOTKIT_PROJECT_DIR", str(project))
    monkeypatch.setenv("SPOTKIT_PROVIDER_MIRROR", "auto")
    monkeypatch.setenv("SPOTKIT_TERRAFORM_TIMEOUT", "600")
    state, started = emulator.start(project, port=free_port())
    assert started is True
    yield project, state
    emulator.stop(project)


def run(*args: str):
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result


def client(state, service):
    return boto3.client(service, endpoint_url=state.url, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def check_created(doc: dict, state) -> int:
    """Check, with boto3, what the synthesized doc says exists; return how many checks ran."""
    resources = doc.get("resource") or {}
    checks = 0
    for group in (resources.get("aws_autoscaling_group") or {}).values():
        found = client(state, "autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[group["name"]])
        (asg,) = found["AutoScalingGroups"]
        mip = group.get("mixed_instances_policy")
        if mip:
            dist = mip["instances_distribution"]
            got = asg["MixedInstancesPolicy"]["InstancesDistribution"]
            assert got["OnDemandBaseCapacity"] == dist.get("on_demand_base_capacity", 0)
            assert got["OnDemandPercentageAboveBaseCapacity"] == dist["on_demand_percentage_above_base_capacity"]
            assert got["SpotAllocationStrategy"] == dist["spot_allocation_strategy"]
            want_types = [o["instance_type"] for o in mip["launch_template"].get("override", []) if "instance_type" in o]
            got_types = [o.get("InstanceType") for o in asg["MixedInstancesPolicy"]["LaunchTemplate"].get("Overrides", [])]
            assert got_types[:len(want_types)] == want_types
        assert (asg["MinSize"], asg["MaxSize"]) == (group["min_size"], group["max_size"])
        checks += 1
    for lt in (resources.get("aws_launch_template") or {}).values():
        ec2 = client(state, "ec2")
        (got,) = ec2.describe_launch_templates(LaunchTemplateNames=[lt["name"]])["LaunchTemplates"] if "name" in lt \
            else [t for t in ec2.describe_launch_templates()["LaunchTemplates"]
                  if t["LaunchTemplateName"].startswith(lt["name_prefix"])]
        data = ec2.describe_launch_template_versions(LaunchTemplateId=got["LaunchTemplateId"])["LaunchTemplateVersions"][0]
        meta = lt.get("metadata_options")
        if meta:
            assert data["LaunchTemplateData"]["MetadataOptions"]["HttpTokens"] == meta["http_tokens"]
        checks += 1
    for queue in (resources.get("aws_sqs_queue") or {}).values():
        if "name" in queue:
            url = client(state, "sqs").get_queue_url(QueueName=queue["name"])["QueueUrl"]
            assert url.endswith("/" + queue["name"])
            checks += 1
    return checks


@pytest.mark.parametrize("stack", sorted(registry.STACKS))
def test_stack_applies_and_destroys_on_the_local_target(stack, local):
    # GIVEN a running emulator for this project
    project, state = local
    # WHEN the stack is planned with --detailed-exitcode THEN it has changes (exit 2)
    planned = run("plan", stack, "--target", "local", "--detailed-exitcode")
    assert planned.exit_code == 2, planned.output
    doc = json.loads((project / "local" / stack / "cdk.tf.json").read_text())
    # WHEN the saved plan is applied
    applied = run("apply", stack, "--target", "local", "--plan", str(project / "local" / stack / "tfplan"), "--yes")
    assert applied.exit_code == 0, applied.output
    # THEN what the stack declares exists in the emulator, as declared
    check_created(doc, state)
    if stack == "training":
        assert check_created(doc, state) >= 3  # the group, its launch template, the queue
        # AND `spotkit output` reports what Terraform itself (read through tftest) reports
        import tftest

        tf = tftest.TerraformTest(str(project / "local" / stack), binary=TERRAFORM)
        want = {name: value for name, value in tf.output().items()}
        shown = run("--output", "json", "output", stack, "--target", "local")
        assert json.loads(shown.output) == want
        assert want["group_name"] == "spotkit-training"
    # AND planning again shows no change at all (the emulator's patches, toolkit/rehearsal/local/registry.py PATCHES,
    # make moto round-trip what the stacks set), so `--detailed-exitcode` drift checks work locally
    again = run("plan", stack, "--target", "local", "--detailed-exitcode")
    assert again.exit_code == 0, again.output
    assert f"{stack}: no changes" in again.output, again.output
    # WHEN it is destroyed THEN the groups are gone
    destroyed = run("destroy", stack, "--target", "local", "--yes", "--allow-data-loss")
    assert destroyed.exit_code == 0, destroyed.output
    for group in ((doc.get("resource") or {}).get("aws_autoscaling_group") or {}).values():
        left = client(state, "autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[group["name"]])
        assert left["AutoScalingGroups"] == []


def test_local_emulator_start_is_idempotent_and_stop_is_clean(local):
    # GIVEN the running emulator WHEN start runs again THEN the same one is reused
    project, state = local
    again, started = emulator.start(project, port=state.port)
    assert (started, again.pid, again.url) == (False, state.pid, state.url)
    # WHEN it is stopped THEN status says so and the process is gone
    emulator.stop(project)
    st = emulator.status(project)
    assert (st.running, st.detail) == (False, "not started")
