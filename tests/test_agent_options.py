"""The agent's options have one home (toolkit/runtime/agent/options.py, ``OPTIONS``): the shipped stdlib command line,
``spotkit agent``, ``AgentConfig``'s defaults, the systemd unit's argv and the user data settings are all
generated from it or read it, so they cannot drift apart."""

from __future__ import annotations

import dataclasses
import shlex

import pytest
from click.testing import CliRunner

from spotkit.constructs.agent_artifact import AgentArtifactRef
from spotkit.constructs.agent_user_data import AgentSettings, agent_user_data_part
from spotkit.runtime.agent import AgentConfig, options
from spotkit.runtime.agent.cli import build_parser
from spotkit.runtime.agent.options import POLL_INTERVAL_SECONDS
from spotkit.runtime.agent.systemd import PYZ_LAUNCHER, agent_command
from spotkit.cli.agent_cmd import agent_command as click_agent

REF = AgentArtifactRef("s3://bucket/agent/" + "b" * 64 + "/spotkit-agent.pyz", "b" * 64)
GLOBAL = {o.dest for o in options.OPTIONS if o.global_}


def _argparse_values(argv):
    return {k: v for k, v in vars(build_parser().parse_args(argv)).items() if k not in GLOBAL}


def _click_values(argv):
    return click_agent.make_context("agent", list(argv)).params


def _argparse_actions():
    return {a.dest: a for a in build_parser()._actions if a.option_strings and a.dest != "help"}


def test_the_poll_interval_default_is_half_a_second():
    assert POLL_INTERVAL_SECONDS == 0.5


def test_both_command_lines_have_the_same_options_defaults_and_help():
    # GIVEN the two parsers, generated from one table
    actions = _argparse_actions()
    params = {p.name: p for p in click_agent.params}
    # THEN spotkit agent has every option but spotkit's global ones (they come before the command)
    assert set(actions) - set(params) == GLOBAL == {"region", "profile", "endpoint_url"}
    assert set(params) <= set(actions)
    for dest, param in params.items():
        action = actions[dest]
        assert (param.opts, param.default, param.help) == (action.option_strings, action.default, action.help), dest
        assert list(getattr(param.type, "choices", None) or []) == list(action.choices or []), dest


@pytest.mark.parametrize("argv", [
    [],
    ["--cloud", "gcp", "--interval", "1", "--signal", "SIGINT", "--token-ttl", "60", "--once", "--notice-seconds",
     "20", "--wait-seconds", "3", "--on-advisory", "logger advisory"],
    ["--on-notice", "/opt/train/ckpt.sh", "--notice-policy", "checkpoint-and-continue", "--checkpoint-seconds", "30",
     "--margin", "20", "--lifecycle-hook", "my-hook", "--lifecycle-heartbeat", "600", "--no-complete-lifecycle",
     "--maintenance-lead", "300", "--allow-imdsv1", "--dry-run", "--signal-on-hibernate", "--group", "g1",
     "--state-file", "/var/lib/spotkit/s.json", "--workload-pidfile", "/run/w.pid", "--on-rebalance", "true"],
])
def test_both_command_lines_parse_an_argv_to_the_same_values_and_config(argv):
    # WHEN the same argv goes through argparse (the pyz) and click (spotkit agent)
    from_argparse, from_click = _argparse_values(argv), _click_values(argv)
    # THEN every value, given or defaulted, is the same, and so is the agent's config
    assert from_argparse == from_click
    cloud = from_click["cloud"]
    assert options.agent_config(from_argparse, cloud) == options.agent_config(from_click, cloud)


def test_no_options_give_the_config_defaults():
    # GIVEN no option at all THEN the command line's config is AgentConfig() with its own defaults
    assert options.agent_config(_argparse_values([]), "aws") == AgentConfig()
    fields = {f.name: f.default for f in dataclasses.fields(AgentConfig)}
    shared = {dest for dest in options.DEFAULTS if dest in fields and dest != "margin"}  # margin: None = per cloud
    assert shared >= {"interval", "lifecycle_hook", "lifecycle_heartbeat", "maintenance_lead", "wait_seconds"}
    assert {d: options.DEFAULTS[d] for d in shared} == {d: fields[d] for d in shared}


@pytest.mark.parametrize("argv, message", [
    (["--token-ttl", "0"], "0 is not between 1 and 21600"),
    (["--workload-pgid", "1"], "process group 1 is not a workload"),
    (["--state-file", "/tmp"], "'/tmp' is a directory, not a file"),
])
def test_both_command_lines_refuse_a_bad_value_with_the_same_message(argv, message, capsys):
    # WHEN a value the table's converter refuses is given to each parser
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(argv)
    # THEN argparse exits 2 and click exits 2 (usage), both with the converter's words
    assert exited.value.code == 2 and message in capsys.readouterr().err
    result = CliRunner().invoke(click_agent, argv)
    assert result.exit_code == 2 and message in result.output


@pytest.mark.parametrize("kwargs", [
    {"on_notice": "true"},
    {"on_notice": 'echo "50% done" $HOME', "on_rebalance": "logger rb", "interval": 1, "margin": 20,
     "workload_pidfile": "/run/spotkit/workload.pid", "lifecycle_heartbeat": 600, "notice_policy":
     "checkpoint-and-continue", "checkpoint_seconds": 60.0, "complete_lifecycle": False},
])
def test_the_systemd_argv_parses_back_to_the_config_it_was_made_from(kwargs):
    # GIVEN the unit's argv for some settings
    argv = agent_command(launcher=PYZ_LAUNCHER, **kwargs)[len(PYZ_LAUNCHER):]
    # THEN both parsers read it back to the config those settings mean
    expected = AgentConfig(on_notice=kwargs["on_notice"], on_rebalance=kwargs.get("on_rebalance"),
                           interval=kwargs.get("interval", POLL_INTERVAL_SECONDS), margin=kwargs.get("margin", 15.0),
                           workload_pidfile=kwargs.get("workload_pidfile"),
                           lifecycle_heartbeat=kwargs.get("lifecycle_heartbeat", 300),
                           complete_lifecycle=kwargs.get("complete_lifecycle", True),
                           notice_policy=kwargs.get("notice_policy", "stop"),
                           checkpoint_seconds=kwargs.get("checkpoint_seconds"),
                           state_file="/var/lib/spotkit/agent-state.json")
    assert options.agent_config(_argparse_values(argv), "aws") == expected
    assert options.agent_config(_click_values(argv), "aws") == expected


def test_to_argv_refuses_a_name_that_is_not_an_option():
    with pytest.raises(KeyError, match="not agent options: intervall"):
        options.to_argv({"intervall": 1.0})


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


def test_both_helps_show_the_default_the_same_way():
    out = " ".join(CliRunner().invoke(click_agent, ["--help"]).output.split())
    assert "Seconds between polls. (default 0.5)" in out
    assert "Seconds between polls. (default 0.5)" in " ".join(build_parser().format_help().split())
