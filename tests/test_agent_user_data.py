"""The agent's boot-script part and systemd unit, and the compute group installing it by default."""

from __future__ import annotations

import shlex
import shutil
import subprocess

import pytest

from modules.agent_user_data import AgentSettings, agent_user_data_part
from modules.compute_group import ComputeGroupSettings, SpotComputeGroup, validate_settings
from tests.support.synth import local_value, synth_construct
from toolkit.agent.systemd import agent_command, render_unit
from toolkit.errors import ValidationError

SUBNETS = ["subnet-a", "subnet-b"]


def exec_start(unit: str) -> list[str]:
    line = next(l for l in unit.splitlines() if l.startswith("ExecStart="))
    return shlex.split(line[len("ExecStart="):].replace("%%", "%").replace("$$", "$"))


def test_unit_runs_the_agent_with_the_settings():
    # GIVEN custom settings WHEN the part is rendered
    part = agent_user_data_part(AgentSettings(on_notice="/opt/train/checkpoint.sh --now", on_rebalance="logger rb",
                                              interval=1, margin=20), lifecycle_heartbeat=600)
    # THEN the unit's command line carries them, with the state file and the default pidfile
    unit = part.script.split("<<'SPOTKIT_UNIT'\n", 1)[1].split("\nSPOTKIT_UNIT", 1)[0]
    assert exec_start(unit) == [
        "/opt/spotkit/bin/spotkit", "agent", "--metadata-url", "http://169.254.169.254",
        "--on-notice", "/opt/train/checkpoint.sh --now", "--interval", "1", "--margin", "20",
        "--lifecycle-heartbeat", "600", "--state-file", "/var/lib/spotkit/agent-state.json",
        "--on-rebalance", "logger rb", "--workload-pidfile", "/run/spotkit/workload.pid"]
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


@pytest.mark.parametrize("agent, message", [
    (AgentSettings(package_spec="spotkit; rm -rf /"),
     "SpotComputeGroup 'fleet': agent.package_spec 'spotkit; rm -rf /' must be one pip requirement or URL without "
     "quotes, newlines or shell characters (e.g. spotkit==0.1.0)"),
    (AgentSettings(interval=0),
     "SpotComputeGroup 'fleet': agent.interval must be between 0.1 and 30 seconds (got 0); a spot notice comes "
     "120 s ahead, 2 s is the default"),
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


def test_compute_group_installs_the_agent_by_default(two_groups):
    script = local_value(two_groups, "with_with_agent_user_data")
    # THEN the part is in the launch template's script, with bash variables escaped for Terraform
    assert "# --- part: spotkit-agent ---" in script
    assert "systemctl enable --now spotkit-agent.service" in script
    assert 'aws s3 cp "$SPOTKIT_PACKAGE" "$spotkit_dl/"' in script  # a private mktemp -d folder, not /tmp/
    assert 'SPOTKIT_PACKAGE="$spotkit_dl/$(basename "$SPOTKIT_PACKAGE")"' in script
    assert "--lifecycle-heartbeat 300" in script


def test_install_agent_false_leaves_it_out(two_groups):
    script = local_value(two_groups, "without_no_agent_user_data")
    assert "spotkit-agent" not in script


def test_default_package_spec_is_pinned_to_this_version():
    # An unpinned name could install another release, or another project's package of that name.
    from toolkit import __version__

    assert AgentSettings().package_spec == f"spotkit=={__version__}"
    assert f"spotkit=={__version__}" in agent_user_data_part(AgentSettings()).script
