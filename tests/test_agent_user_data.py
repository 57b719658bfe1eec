"""The agent's boot-script part and systemd unit, and the compute group installing it by default."""

from __future__ import annotations

import shlex
import shutil
import subprocess

import pytest

import json

from spotkit.constructs.agent_artifact import AgentArtifactRef, build_agent_pyz
from spotkit.constructs.agent_user_data import AgentSettings, agent_user_data_part
from spotkit.constructs.compute_group import ComputeGroupSettings, SpotComputeGroup, validate_settings
from tests.support.synth import local_value, one, resources, synth_construct
from spotkit.runtime.agent.systemd import agent_command, render_unit
from spotkit.errors import ValidationError

SUBNETS = ["subnet-a", "subnet-b"]
REF = AgentArtifactRef("s3://bucket/agent/" + "a" * 64 + "/spotkit-agent.pyz", "a" * 64)


def exec_start(unit: str) -> list[str]:
    line = next(l for l in unit.splitlines() if l.startswith("ExecStart="))
    return shlex.split(line[len("ExecStart="):].replace("%%", "%").replace("$$", "$"))


def test_unit_runs_the_shipped_zipapp_with_the_settings_under_system_python_isolated():
    # GIVEN custom settings WHEN the part is rendered with the stack's artifact
    part = agent_user_data_part(AgentSettings(on_notice="/opt/train/checkpoint.sh --now", on_rebalance="logger rb",
                                              interval=1, margin=20), lifecycle_heartbeat=600, artifact=REF)
    # THEN the unit runs /usr/bin/python3 -I -S on the zipapp, with the settings, state file and pidfile
    unit = part.script.split("<<'SPOTKIT_UNIT'\n", 1)[1].split("\nSPOTKIT_UNIT", 1)[0]
    assert exec_start(unit) == [
        "/usr/bin/python3", "-I", "-S", "/opt/spotkit/spotkit-agent.pyz", "--metadata-url", "http://169.254.169.254",
        "--on-notice", "/opt/train/checkpoint.sh --now", "--on-rebalance", "logger rb", "--interval", "1",
        "--margin", "20", "--workload-pidfile", "/run/spotkit/workload.pid", "--lifecycle-heartbeat", "600",
        "--state-file", "/var/lib/spotkit/agent-state.json"]
    assert f"SPOTKIT_AGENT_SHA256={'a' * 64}" in part.script
    assert "pip" not in part.script


def test_part_needs_an_artifact_or_a_package_spec():
    with pytest.raises(ValueError, match="give artifact"):
        agent_user_data_part(AgentSettings())
    with pytest.raises(ValueError, match="64 lowercase hex digits"):
        agent_user_data_part(AgentSettings(), artifact=AgentArtifactRef("s3://b/k", "abc"))


def test_unit_runs_a_pip_installed_agent_when_package_spec_is_given():
    # GIVEN the opt-in package_spec WHEN the part is rendered
    part = agent_user_data_part(AgentSettings(package_spec="spotkit==0.1.0", on_notice="/opt/train/checkpoint.sh --now",
                                              on_rebalance="logger rb", interval=1, margin=20), lifecycle_heartbeat=600)
    # THEN the unit's command line carries them, with the state file and the default pidfile
    unit = part.script.split("<<'SPOTKIT_UNIT'\n", 1)[1].split("\nSPOTKIT_UNIT", 1)[0]
    assert exec_start(unit) == [
        "/opt/spotkit/bin/spotkit", "agent", "--metadata-url", "http://169.254.169.254",
        "--on-notice", "/opt/train/checkpoint.sh --now", "--on-rebalance", "logger rb", "--interval", "1",
        "--margin", "20", "--workload-pidfile", "/run/spotkit/workload.pid", "--lifecycle-heartbeat", "600",
        "--state-file", "/var/lib/spotkit/agent-state.json"]
    assert "Restart=always" in unit.splitlines() and "RuntimeDirectoryPreserve=yes" in unit.splitlines()
    assert (part.name, part.order) == ("spotkit-agent", 80)


def test_quoting_survives_systemd_specifiers():
    argv = agent_command(on_notice='echo "50% done" $HOME')
    assert exec_start(render_unit(argv)) == argv


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_unit_passes_systemd_analyze_verify(tmp_path):
    # GIVEN the unit pointed at an executable that exists here WHEN systemd verifies it THEN no complaint
    unit = tmp_path / "spotkit-agent.service"
    unit.write_text(render_unit(agent_command(on_notice='echo "a b" 100%', executable=shutil.which("true"))))
    proc = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stderr.strip()) == (0, "")


def test_script_is_valid_bash_and_quotes_the_package_spec(tmp_path):
    part = agent_user_data_part(AgentSettings(package_spec="spotkit[agent]==0.1.0"))
    script = tmp_path / "part.sh"
    script.write_text(part.script)
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    assert "SPOTKIT_PACKAGE='spotkit[agent]==0.1.0'" in part.script
    assert "s3://*) spotkit_dl=$(mktemp -d)" in part.script


def test_artifact_script_is_valid_bash(tmp_path):
    script = tmp_path / "part.sh"
    script.write_text(agent_user_data_part(AgentSettings(), artifact=REF).script)
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0


@pytest.mark.parametrize("agent, message", [
    (AgentSettings(package_spec="spotkit; rm -rf /"),
     "SpotComputeGroup 'fleet': agent.package_spec 'spotkit; rm -rf /' must be one pip requirement or URL without "
     "quotes, newlines or shell characters (e.g. spotkit==0.1.0)"),
    (AgentSettings(interval=0),
     "SpotComputeGroup 'fleet': agent.interval must be between 0.1 and 30 seconds (got 0); a spot notice comes "
     "120 s ahead, 0.5 s is the default"),
    (AgentSettings(margin=120),
     "SpotComputeGroup 'fleet': agent.margin must be between 0 and 119 seconds (got 120): a spot notice comes "
     "120 s before the instance goes"),
    (AgentSettings(on_notice="a\nb"), "SpotComputeGroup 'fleet': agent.on_notice must be one command line (got 'a\\nb')"),
])
def test_bad_agent_settings_are_refused(agent, message):
    with pytest.raises(ValidationError) as err:
        validate_settings("fleet", ComputeGroupSettings(agent=agent), SUBNETS)
    assert str(err.value) == message


def test_bad_agent_settings_are_ignored_when_the_agent_is_off():
    validate_settings("fleet", ComputeGroupSettings(install_agent=False, agent=AgentSettings(interval=0)), SUBNETS)


@pytest.fixture(scope="module")
def two_groups():
    # GIVEN one group with default settings and one with install_agent=False, synthesized once
    def build(stack):
        SpotComputeGroup(stack, "with", name="with-agent", vpc_id="vpc-1", subnet_ids=SUBNETS)
        SpotComputeGroup(stack, "without", name="no-agent", vpc_id="vpc-1", subnet_ids=SUBNETS,
                         settings=ComputeGroupSettings(install_agent=False))

    doc, _ = synth_construct(build)
    return doc


def test_compute_group_installs_the_shipped_agent_by_default(two_groups):
    script = local_value(two_groups, "with_with_agent_user_data")
    sha = build_agent_pyz().sha256
    # THEN the part downloads the stack's artifact and checks the hash built at this synthesis
    assert "# --- part: spotkit-agent ---" in script
    assert "systemctl enable --now spotkit-agent.service" in script
    assert f"SPOTKIT_AGENT_SHA256={sha}" in script
    assert f'SPOTKIT_AGENT_S3="s3://${{aws_s3_bucket.spotkit-agent-artifact_bucket_' in script
    assert f'/agent/{sha}/spotkit-agent.pyz"' in script
    assert "pip install" not in script
    assert "--lifecycle-heartbeat 300" in script


def test_the_stack_ships_the_artifact_in_a_private_tls_only_bucket(two_groups):
    sha = build_agent_pyz().sha256
    bucket_id = next(iter(resources(two_groups, "aws_s3_bucket")))
    obj = one(two_groups, "aws_s3_object")
    assert obj["key"] == f"agent/{sha}/spotkit-agent.pyz" and obj["source_hash"] == sha
    assert obj["server_side_encryption"] == "AES256" and obj["source"].endswith("spotkit-agent.pyz")
    pab = one(two_groups, "aws_s3_bucket_public_access_block")
    assert all(pab[k] is True for k in ("block_public_acls", "block_public_policy", "ignore_public_acls",
                                        "restrict_public_buckets"))
    sse = one(two_groups, "aws_s3_bucket_server_side_encryption_configuration")
    assert sse["rule"][0]["apply_server_side_encryption_by_default"]["sse_algorithm"] == "AES256"
    assert one(two_groups, "aws_s3_bucket_versioning")["versioning_configuration"]["status"] == "Enabled"
    policy = json.loads(one(two_groups, "aws_s3_bucket_policy")["policy"])
    [tls] = policy["Statement"]
    assert (tls["Effect"], tls["Action"], tls["Condition"]) == ("Deny", "s3:*",
                                                                 {"Bool": {"aws:SecureTransport": "false"}})
    assert one(two_groups, "aws_s3_bucket_ownership_controls")["rule"]["object_ownership"] == "BucketOwnerEnforced"
    assert bucket_id  # one bucket for the stack, whatever number of groups install the agent
    assert len(resources(two_groups, "aws_s3_bucket")) == 1


def test_instance_role_may_read_that_one_key_only(two_groups):
    sha = build_agent_pyz().sha256
    policies = {k: json.loads(v["policy"]) for k, v in resources(two_groups, "aws_iam_role_policy").items()}
    reads = [(k, st) for k, doc in policies.items() for st in doc["Statement"] if "s3" in json.dumps(st["Action"])]
    # THEN only the group with the agent reads, one object: GetObject on bucket-arn/agent/<sha>/spotkit-agent.pyz
    assert len(reads) == 1
    key, st = reads[0]
    assert key.startswith("with_policy")
    assert st["Action"] == ["s3:GetObject"]
    assert st["Resource"].endswith(f"}}/agent/{sha}/spotkit-agent.pyz")
    assert st["Resource"].startswith("${aws_s3_bucket.spotkit-agent-artifact_bucket_")


def test_install_agent_false_leaves_it_out(two_groups):
    script = local_value(two_groups, "without_no_agent_user_data")
    assert "spotkit-agent" not in script


def test_no_package_index_at_boot_by_default():
    # An unpublished (or squatted) package name resolved as root at boot would run someone else's code.
    assert AgentSettings().package_spec is None
    assert "pip" not in agent_user_data_part(AgentSettings(), artifact=REF).script


def test_notebook_installs_the_shipped_agent_without_lifecycle_completion():
    from spotkit.stacks.notebook import NotebookConfig, NotebookStack
    from tests.support.synth import build_stack

    # GIVEN the notebook stack (a persistent spot instance: hibernate or stop, no Auto Scaling group)
    doc, _ = build_stack(NotebookStack, NotebookConfig())
    [key] = [k for k in doc["locals"] if "_user_data" in k]
    script = doc["locals"][key]
    # THEN its boot installs the verified zipapp, and the agent does not try to complete a lifecycle action
    assert f"SPOTKIT_AGENT_SHA256={build_agent_pyz().sha256}" in script
    assert "--no-complete-lifecycle" in script
    policy = json.loads(one(doc, "aws_iam_role_policy")["policy"])
    [read] = [st for st in policy["Statement"] if st["Sid"] == "ReadAgentArtifact"]
    assert read["Action"] == ["s3:GetObject"] and read["Resource"].endswith("/spotkit-agent.pyz")
