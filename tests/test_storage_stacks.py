"""Storage in the stacks: the training stack's defaults include EFS checkpoints and a retained data
volume; the notebook stack synthesizes with defaults (a persistent spot instance that hibernates)."""

from __future__ import annotations

import json

import pytest

from spotkit.constructs.spot_instance import SpotInstanceSettings
from spotkit.stacks.notebook import NotebookConfig, NotebookStack
from spotkit.stacks.training import TrainingConfig, TrainingStack
from tests.support.synth import build_stack, local_value, one, resources
from tests.support.tf_validate import needs_terraform, terraform_validate
from spotkit.config import apply_overrides


@pytest.fixture(scope="module")
def training():
    # GIVEN no config WHEN the training stack is synthesized
    doc, _ = build_stack(TrainingStack, TrainingConfig())
    return doc


@pytest.fixture(scope="module")
def notebook():
    # GIVEN no config WHEN the notebook stack is synthesized
    doc, _ = build_stack(NotebookStack, NotebookConfig())
    return doc


def test_training_defaults_mount_efs_checkpoints_on_the_fleet(training):
    # THEN a file system with a mount target in each of the 2 private subnets is mounted by the fleet
    assert one(training, "aws_efs_file_system")["encrypted"] is True
    assert len(resources(training, "aws_efs_mount_target")) == 2
    script = local_value(training, "fleet_")
    assert "/mnt/checkpoints efs _netdev,noresvport,tls,iam,accesspoint=" in script
    assert training["output"]["checkpoint_file_system_id"]["value"].startswith("${aws_efs_file_system.")


def test_training_defaults_keep_a_data_volume_and_snapshot_it(training):
    lt = one(training, "aws_launch_template")
    assert [d["device_name"] for d in lt["block_device_mappings"]] == ["/dev/xvda"]  # claimed at boot, not templated
    script = local_value(training, "fleet_")
    assert "spotkit_data_volume spotkit-training /dev/sdf /mnt/data wait 120 --size 200 --volume-type gp3 --encrypted " \
           "--iops 3000 --throughput 250 --tag-specifications" in script
    dlm = one(training, "aws_dlm_lifecycle_policy")
    assert dlm["policy_details"]["target_tags"] == {"spotkit:retain-group": "spotkit-training"}


def test_training_storage_can_be_switched_off_from_config():
    # GIVEN a config that turns checkpoints off and removes the data volume
    config = apply_overrides(TrainingConfig(), {"checkpoints": {"enabled": False}, "data_volume": None},
                             prefix="training")
    # THEN the config carries it (the stack then creates neither)
    assert config.checkpoints.enabled is False
    assert config.data_volume is None


def test_notebook_is_a_persistent_spot_instance_that_hibernates(notebook):
    inst = one(notebook, "aws_instance")
    assert inst["instance_market_options"] == {"market_type": "spot", "spot_options": {
        "instance_interruption_behavior": "hibernate", "spot_instance_type": "persistent"}}
    assert inst["hibernation"] is True
    # AND the root is encrypted and at least RAM (16 GiB for m6i.xlarge) + OS
    assert inst["root_block_device"]["encrypted"] is True
    assert inst["root_block_device"]["volume_size"] == 50


def test_notebook_data_volume_is_a_separate_tagged_volume_snapshotted_by_dlm(notebook):
    vol = one(notebook, "aws_ebs_volume")
    assert vol["encrypted"] is True
    assert vol["final_snapshot"] is True
    assert {k: vol["tags"][k] for k in ("spotkit:group", "spotkit:device", "spotkit:retain")} == {
        "spotkit:group": "spotkit-notebook", "spotkit:device": "/dev/sdf", "spotkit:retain": "true"}
    attach = one(notebook, "aws_volume_attachment")
    assert attach["device_name"] == "/dev/sdf"
    dlm = one(notebook, "aws_dlm_lifecycle_policy")
    assert dlm["policy_details"]["target_tags"] == {"spotkit:retain-group": "spotkit-notebook"}


def test_notebook_mounts_efs_checkpoints_with_a_scoped_grant(notebook):
    policy = json.loads(one(notebook, "aws_iam_role_policy")["policy"])
    assert [s["Sid"] for s in policy["Statement"]] == ["FindOwnDataVolumes", "ReadAgentArtifact", "MountCheckpoints"]
    rule = one(notebook, "aws_vpc_security_group_ingress_rule")
    (sg_name,) = [k for k, v in resources(notebook, "aws_security_group").items() if v["name_prefix"] == "spotkit-notebook-"]
    assert rule["referenced_security_group_id"] == f"${{aws_security_group.{sg_name}.id}}"


def test_notebook_config_with_stop_behaviour():
    # GIVEN a GPU notebook that stops on interruption WHEN configured from a file's values
    config = apply_overrides(NotebookConfig(), {"instance": {"instance_type": "g5.xlarge",
                                                             "interruption_behaviour": "stop"}}, prefix="notebook")
    # THEN hibernation is off for it
    assert config.instance.effective_hibernation.enabled is False
    assert isinstance(config.instance, SpotInstanceSettings)


@pytest.mark.terraform
def test_notebook_and_training_validate_against_provider_5_100(notebook, training, tmp_path):
    needs_terraform()
    for name, doc in (("notebook", notebook), ("training", training)):
        result = terraform_validate(doc, tmp_path / name)
        assert result.returncode == 0, name + ": " + result.stdout + result.stderr


@pytest.mark.parametrize("stack_name", ["training", "notebook"])
def test_rendered_boot_script_is_valid_bash(stack_name, training, notebook, tmp_path):
    # GIVEN the user data Terraform will render (Terraform turns $${ into ${ and fills in resource ids)
    import re
    import shutil
    import subprocess

    if shutil.which("bash") is None:
        pytest.skip("bash is not on PATH")
    doc = training if stack_name == "training" else notebook
    (script,) = doc["locals"].values()
    rendered = re.sub(r"(?<!\$)\$\{aws_[^}]+\}", "fs-0123456789abcdef0", script).replace("$${", "${").replace("%%{", "%{")
    path = tmp_path / "user-data.sh"
    path.write_text(rendered)
    # WHEN bash parses it THEN it has no syntax error
    result = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "fs-0123456789abcdef0:/ /mnt/checkpoints efs" in rendered
