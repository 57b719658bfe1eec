"""The shipped agent on a real deployment: the training stack applied to the local target with real
Terraform puts spotkit-agent.pyz in the stack's bucket in the emulator's S3, and its sha256 in the launch
template's user data; the deployed boot part then downloads, verifies and installs exactly that object."""

from __future__ import annotations

import base64
import hashlib

import pytest

from spotkit.constructs.agent_artifact import build_agent_pyz
from tests.support.boot_part import user_data_part
from tests.test_agent_boot_part import run_agent_part
from tests.test_deploy_terraform import client, local, run  # noqa: F401 - `local` is a fixture

pytestmark = [pytest.mark.terraform]

GROUP = "spotkit-training"


def test_local_apply_ships_the_agent_and_its_hash(local, tmp_path, monkeypatch):  # noqa: F811
    project, state = local
    monkeypatch.chdir(tmp_path)
    sha = build_agent_pyz().sha256
    # GIVEN the training stack applied to the emulator with real Terraform
    applied = run("apply", "training", "--target", "local", "--yes")
    assert applied.exit_code == 0, applied.output
    s3, ec2, asg = client(state, "s3"), client(state, "ec2"), client(state, "autoscaling")
    # THEN the stack's bucket holds the artifact at its content-addressed key, byte for byte what synth built
    [bucket] = [b["Name"] for b in s3.list_buckets()["Buckets"] if b["Name"].startswith("spotkit-agent-")]
    key = f"agent/{sha}/spotkit-agent.pyz"
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert hashlib.sha256(body).hexdigest() == sha
    # AND the bucket is private, encrypted and versioned (its TLS-only policy is checked at synthesis: the local
    # target leaves it out, the emulator being plain HTTP; see toolkit/deploy/local_target.LOCAL_UNSUPPORTED)
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    rule = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert all(block.values()) and len(block) == 4
    assert "aws_s3_bucket_policy" in applied.output  # reported as left out, with the reason
    # AND the launch template's user data carries the hash and the deployed bucket's name
    group = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[GROUP])["AutoScalingGroups"][0]
    spec = (group.get("MixedInstancesPolicy", {}).get("LaunchTemplate", {}).get("LaunchTemplateSpecification")
            or group["LaunchTemplate"])
    (version,) = ec2.describe_launch_template_versions(LaunchTemplateId=spec["LaunchTemplateId"],
                                                       Versions=["$Latest"])["LaunchTemplateVersions"]
    part = user_data_part(base64.b64decode(version["LaunchTemplateData"]["UserData"]).decode(), "spotkit-agent")
    assert f"SPOTKIT_AGENT_SHA256={sha}" in part
    assert f'SPOTKIT_AGENT_S3="s3://{bucket}/{key}"' in part
    # WHEN that deployed part runs as an instance's boot THEN it installs exactly that artifact and starts it
    done, root, calls = run_agent_part(state.url, part, tmp_path / "boot")
    assert (root / "opt/spotkit/spotkit-agent.pyz").read_bytes() == body, done.stdout + done.stderr
    assert "systemctl enable --now spotkit-agent.service" in calls
