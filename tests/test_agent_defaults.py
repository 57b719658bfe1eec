"""The agent's defaults have one home (toolkit/runtime/agent/defaults.py): both command lines, ``AgentConfig``, the
systemd argv and the user data settings read it, so a change there reaches every instance."""

from __future__ import annotations

import shlex

from click.testing import CliRunner

from spotkit.constructs.agent_user_data import AgentSettings, agent_user_data_part
from spotkit.constructs.agent_artifact import AgentArtifactRef
from spotkit.runtime.agent import AgentConfig
from spotkit.runtime.agent.cli import build_parser
from spotkit.runtime.agent.defaults import POLL_INTERVAL_SECONDS
from spotkit.runtime.agent.systemd import agent_command
from spotkit.cli.agent_cmd import agent_command as click_agent

REF = AgentArtifactRef("s3://bucket/agent/" + "b" * 64 + "/spotkit-agent.pyz", "b" * 64)


def test_the_poll_interval_default_is_half_a_second():
    assert POLL_INTERVAL_SECONDS == 0.5


def test_every_place_that_starts_an_agent_reads_the_one_poll_interval_default():
    # GIVEN no --interval anywhere
    # THEN the stdlib command line, the click command, the config, the unit's argv and the user data agree
    assert build_parser().parse_args([]).interval == POLL_INTERVAL_SECONDS
    option = next(p for p in click_agent.params if p.name == "interval")
    assert option.default == POLL_INTERVAL_SECONDS
    assert AgentConfig().interval == POLL_INTERVAL_SECONDS
    argv = agent_command(on_notice="true")
    assert argv[argv.index("--interval") + 1] == "0.5"
    assert AgentSettings().interval == POLL_INTERVAL_SECONDS
    script = agent_user_data_part(AgentSettings(on_notice="true"), lifecycle_heartbeat=300, artifact=REF).script
    exec_start = next(line for line in script.splitlines() if line.startswith("ExecStart="))
    words = shlex.split(exec_start[len("ExecStart="):])
    assert words[words.index("--interval") + 1] == "0.5"


def test_click_help_shows_the_default():
    out = CliRunner().invoke(click_agent, ["--help"]).output
    assert "Seconds between polls. [default: 0.5]" in " ".join(out.split())
