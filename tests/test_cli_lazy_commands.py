"""The CLI imports a command's module only when that command runs: `spotkit check` (and the pre-commit
hook) must not pay for boto3, Terraform's driver or the agent. ``COMMANDS`` must name every command."""

from __future__ import annotations

import importlib
import subprocess
import sys

import click

from spotkit.cli import main


def test_the_command_map_names_every_command_of_every_module_and_nothing_else():
    registered: dict[str, str] = {}
    for module in main.COMMAND_MODULES:
        group = click.Group()
        importlib.import_module(module).register(group)
        registered.update({name: module for name in group.commands})
    assert main.COMMANDS == registered


def test_help_lists_every_command_and_each_accepts_the_global_options_after_it():
    names = main.cli.list_commands(None)
    assert sorted(names) == sorted(main.COMMANDS)
    for name in names:
        command = main.cli.get_command(None, name)
        opts = {o for p in command.params for o in getattr(p, "opts", [])}
        assert "--endpoint-url" in opts, name


PROBE = """
import sys
from spotkit.cli.main import main
try:
    main(["check", "--help"])
except SystemExit:
    pass
heavy = sorted(m for m in ("boto3", "botocore.client", "spotkit.deploy.workflow", "spotkit.runtime.agent.core",
                           "spotkit.runbooks.base", "spotkit.runtime.interruption.handler") if m in sys.modules)
print("heavy=" + ",".join(heavy))
"""


def test_spotkit_check_loads_no_aws_client_library():
    res = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines()[-1] == "heavy=", f"imported for `spotkit check --help`: {res.stdout[-300:]}"


SYNTH_PROBE = """
import sys
from spotkit.cli.main import main
try:
    main(["synth", "--no-cache", "--out", sys.argv[1]])
except SystemExit as exc:
    assert not exc.code, exc.code
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("botocore", "boto3", "cdktn_provider_aws"))
print("heavy=" + ",".join(heavy[:5]))
"""


def test_spotkit_synth_loads_no_botocore_and_not_the_single_module_bindings(tmp_path):
    """Synthesis of every stack imports no botocore or boto3 (modules/ and stacks/ read only the standard
    library contracts of toolkit/, never the handler), and the AWS bindings are cdktn-aws's service modules:
    the single-module bindings (cdktn_provider_aws) would make Node.js load every resource of the provider."""
    from spotkit.stacks.registry import STACKS

    res = subprocess.run([sys.executable, "-c", SYNTH_PROBE, str(tmp_path / "out")], capture_output=True,
                         text=True, timeout=600, cwd=tmp_path,
                         env={**__import__("os").environ, "SPOTKIT_SYNTH_CACHE": str(tmp_path / "cache"),
                              "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20"})
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip().splitlines()[-1] == "heavy=", res.stdout[-300:]
    assert sorted(p.parent.name for p in (tmp_path / "out" / "stacks").glob("*/cdk.tf.json")) == sorted(STACKS)
