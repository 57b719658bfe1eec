"""Unit tier for the Terraform driver: local-target rendering, plan reading, data-loss guard, mirror and
binary discovery. No Terraform needed (the e2e tier is tests/test_deploy_terraform.py)."""

from __future__ import annotations

import json
import os
import stat

import pytest

from spotkit.deploy import local_target, mirror, planning
from spotkit.deploy.binary import find_terraform, parse_version
from spotkit.deploy.workflow import backend_block
from spotkit.errors import ConfigError, MissingDependencyError

DOC = {
    "resource": {
        "aws_dlm_lifecycle_policy": {"snap": {"execution_role_arn": "${aws_iam_role.dlm.arn}"}},
        "aws_iam_role": {"dlm": {"name": "dlm"}},
        "aws_sqs_queue": {"q": {"name": "q", "depends_on": ["aws_dlm_lifecycle_policy.snap", "aws_iam_role.dlm"]}},
        "aws_cloudwatch_log_group": {"logs": {"name": "x", "tags": {"policy": "${aws_dlm_lifecycle_policy.snap.id}"}}},
    },
    "output": {"policy": {"value": "${aws_dlm_lifecycle_policy.snap.arn}"}, "queue": {"value": "${aws_sqs_queue.q.url}"}},
    "provider": {"aws": [{"region": "eu-west-1"}]},
}


def test_local_rendering_leaves_out_unsupported_resources_and_what_refers_to_them():
    # GIVEN a stack with a DLM policy, an output and a resource that refer to it, and a depends_on on it
    # WHEN it is rendered for the local target
    rendering = local_target.render(DOC, "http://127.0.0.1:4566")
    # THEN the policy, the resource and the output that refer to it are gone, with reasons
    assert [(r.address, r.reason) for r in rendering.removed] == [
        ("aws_dlm_lifecycle_policy.snap", "moto has no Data Lifecycle Manager (DLM) API"),
        ("aws_cloudwatch_log_group.logs", "refers to aws_dlm_lifecycle_policy.snap, which is left out"),
        ("output.policy", "refers to aws_dlm_lifecycle_policy.snap, which is left out"),
    ]
    assert sorted(rendering.doc["resource"]) == ["aws_iam_role", "aws_sqs_queue"]
    # AND the depends_on keeps only what still exists; the other output stays
    assert rendering.doc["resource"]["aws_sqs_queue"]["q"]["depends_on"] == ["aws_iam_role.dlm"]
    assert list(rendering.doc["output"]) == ["queue"]
    # AND the original document is untouched (the aws target never sees any of it)
    assert "aws_dlm_lifecycle_policy" in DOC["resource"] and "endpoints" not in DOC["provider"]["aws"][0]


def test_local_override_points_every_used_service_at_the_emulator():
    # GIVEN the rendered stack WHEN its provider override is built
    rendering = local_target.render(DOC, "http://127.0.0.1:4566")
    provider = rendering.override["provider"]["aws"][0]
    # THEN the services of its resources and the defaults all go to the emulator, with test credentials
    # (the log group was left out with the DLM policy, so logs is not among them)
    assert rendering.services == ["autoscaling", "ec2", "iam", "s3", "sqs", "ssm", "sts"]
    assert provider["endpoints"] == [{s: "http://127.0.0.1:4566" for s in rendering.services}]
    assert (provider["region"], provider["access_key"], provider["secret_key"]) == ("us-east-1", "testing", "testing")
    assert provider["skip_credentials_validation"] is True
    assert provider["skip_requesting_account_id"] is False, "the account id (moto: 123456789012) keeps rule owners plain"


@pytest.mark.parametrize("tf_type, service", [
    ("aws_launch_template", "ec2"), ("aws_autoscaling_lifecycle_hook", "autoscaling"),
    ("aws_cloudwatch_event_rule", "events"), ("aws_lb_target_group", "elbv2"), ("aws_efs_mount_target", "efs"),
    ("aws_ecs_capacity_provider", "ecs"), ("aws_dynamodb_table", "dynamodb"), ("aws_rds_cluster", "rds"),
    ("aws_made_up_thing", None),
])
def test_service_of_a_resource_type(tf_type, service):
    assert local_target.service_for_type(tf_type) == service


def _plan(*changes):
    return {"resource_changes": [
        {"address": a, "type": a.split(".")[0], "mode": "managed", "change": {"actions": acts, "before": before}}
        for a, acts, before in changes]}


def test_plan_summary_counts_and_calls_out_replacements_and_data_loss():
    # GIVEN a plan that adds, replaces a retained volume, destroys an EFS and a plain volume
    plan = _plan(
        ("aws_sqs_queue.q", ["create"], None),
        ("aws_ebs_volume.data", ["delete", "create"], {"tags": {"spotkit:retain": "true"}}),
        ("aws_efs_file_system.fs", ["delete"], {"tags": {}}),
        ("aws_ebs_volume.scratch", ["delete"], {"tags": {"name": "scratch"}}),
        ("aws_vpc.v", ["update"], {}),
    )
    # WHEN it is summarized
    s = planning.summarize_plan(plan)
    # THEN counts follow Terraform's (a replacement is one add and one destroy)
    assert s.counts == {"add": 2, "change": 1, "destroy": 3}
    assert [c.address for c in s.replacements] == ["aws_ebs_volume.data"]
    # AND only the retained volume and the EFS are data loss
    assert [(c.address, w) for c, w in s.data_loss] == [
        ("aws_ebs_volume.data", "EBS volume tagged spotkit:retain"), ("aws_efs_file_system.fs", "EFS file system")]
    text = planning.render_plan_summary("training", s)
    assert "replace (destroy, then create): aws_ebs_volume.data" in text
    assert "DATA LOSS: aws_efs_file_system.fs (EFS file system) would be destroyed" in text


def test_data_loss_guard_refuses_and_explains():
    # GIVEN a plan that destroys an EFS file system
    s = planning.summarize_plan(_plan(("aws_efs_file_system.fs", ["delete"], {})))
    # WHEN the guard runs without --allow-data-loss THEN it refuses, naming the resource and the way out
    with pytest.raises(planning.DataLossError) as err:
        planning.guard_data_loss(s, allow_data_loss=False)
    assert err.value.message == "refusing to apply: the plan destroys retained data: aws_efs_file_system.fs (EFS file system)"
    assert err.value.hint == ("keep the data (change the configuration so the plan does not replace or destroy it), "
                              "or, if losing it is intended, run again with --allow-data-loss")
    # AND with --allow-data-loss it lets the plan through
    planning.guard_data_loss(s, allow_data_loss=True)


def test_missing_binary_gives_the_install_hint(monkeypatch, tmp_path):
    # GIVEN a PATH with neither terraform nor tofu
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("SPOTKIT_TERRAFORM_BIN", raising=False)
    # WHEN spotkit looks for Terraform THEN the error says what to install
    with pytest.raises(MissingDependencyError) as err:
        find_terraform()
    assert err.value.message == "neither 'terraform' nor 'tofu' was found on PATH"
    assert err.value.hint.startswith("install Terraform >= 1.5 (https://developer.hashicorp.com/terraform/install")


def test_too_old_binary_is_refused(tmp_path):
    # GIVEN a terraform that reports 1.3.9
    fake = tmp_path / "terraform"
    fake.write_text("#!/bin/sh\necho 'Terraform v1.3.9'\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    # WHEN it is passed with --terraform-bin THEN it is refused with its version
    with pytest.raises(MissingDependencyError) as err:
        find_terraform(str(fake))
    assert err.value.message == f"{fake} is version 1.3.9; spotkit needs 1.5.0 or newer"


def test_version_parsing_knows_terraform_and_opentofu():
    assert parse_version("Terraform v1.11.4\non linux_amd64") == ("terraform", (1, 11, 4))
    assert parse_version("OpenTofu v1.8.2") == ("tofu", (1, 8, 2))


def test_provider_mirror_setting(tmp_path, monkeypatch):
    # GIVEN a folder holding a provider, and an empty one
    (tmp_path / "m" / "registry.terraform.io" / "hashicorp" / "aws").mkdir(parents=True)
    monkeypatch.delenv(mirror.ENV_VAR, raising=False)
    # THEN a named mirror resolves, 'none' means no mirror, and an empty folder is an error naming the layout
    assert mirror.resolve(str(tmp_path / "m")) == (tmp_path / "m").resolve()
    assert mirror.resolve("none") is None
    with pytest.raises(ConfigError) as err:
        mirror.resolve(str(tmp_path))
    assert err.value.message == (f"provider mirror {str(tmp_path)!r} holds no providers "
                                 f"(expected {tmp_path}/registry.terraform.io/hashicorp/aws/...)")
    # AND the CLI config installs registry providers from the mirror only
    rc = mirror.render_cli_config(tmp_path / "m")
    assert f'path    = "{tmp_path / "m"}"' in rc and 'exclude = ["registry.terraform.io/*/*"]' in rc


def test_s3_backend_from_settings():
    config = {"settings": {"backend": {"type": "s3", "bucket": "tf-state", "region": "eu-west-1",
                                       "dynamodb_table": "tf-locks"}}}
    assert backend_block("training", config) == {"s3": {
        "bucket": "tf-state", "region": "eu-west-1", "dynamodb_table": "tf-locks",
        "key": "spotkit/training.tfstate", "encrypt": True}}
    assert backend_block("training", {}) is None
    with pytest.raises(ConfigError) as err:
        backend_block("training", {"settings": {"backend": {"type": "s3"}}})
    assert err.value.message == "settings.backend.bucket: required for the s3 backend"
