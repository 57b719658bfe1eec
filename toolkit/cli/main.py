"""Entry point of ``spotkit``: global options, command registration, and error handling.

A ``ToolkitError`` exits 1 with its message and a next step and no traceback; any other exception is
a bug: a one-line message, and the traceback only under ``--debug``.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback

import click

from toolkit import __version__
from toolkit.cli.context import CliContext
from toolkit.errors import ToolkitError

# Each module defines click commands and a ``register(group)`` function.
COMMAND_MODULES = [
    "toolkit.cli.stacks_cmd",
    "toolkit.cli.deploy_cmd",
    "toolkit.cli.local_cmd",
    "toolkit.cli.agent_cmd",
    "toolkit.cli.recover_cmd",
    "toolkit.cli.k8s_cmd",
    "toolkit.cli.check_cmd",
    "toolkit.cli.drill_cmd",
    "toolkit.cli.events_cmd",
    "toolkit.cli.demo_cmd",
    "toolkit.cli.interrupt_cmd",
]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--region", envvar="AWS_REGION", help="AWS region (default: AWS_REGION, else us-east-1).")
@click.option("--profile", envvar="AWS_PROFILE", help="AWS named profile.")
@click.option("--endpoint-url", envvar="SPOTKIT_ENDPOINT_URL",
              help="Send AWS calls here (e.g. the local emulator, http://127.0.0.1:4566).")
@click.option("--output", "-o", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="Output format.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), envvar="SPOTKIT_CONFIG",
              help="YAML or TOML file overriding stack settings (top-level keys are stack names).")
@click.option("--debug", is_flag=True, envvar="SPOTKIT_DEBUG", help="Show tracebacks and debug logs.")
@click.version_option(__version__, prog_name="spotkit")
@click.pass_context
def cli(ctx: click.Context, region, profile, endpoint_url, output, config_path, debug):
    """spotkit: run AI training and inference on spot capacity without losing work."""
    ctx.obj = CliContext(region=region, profile=profile, endpoint_url=endpoint_url, output=output,
                         debug=debug, config_path=config_path)


for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(cli)


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    debug = "--debug" in (argv if argv is not None else sys.argv[1:]) or bool(os.environ.get("SPOTKIT_DEBUG"))
    try:
        cli.main(args=argv, prog_name="spotkit", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except ToolkitError as exc:
        if debug:
            traceback.print_exc()
        click.echo(f"Error: {exc.message}", err=True)
        if exc.hint:
            click.echo(f"  next: {exc.hint}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    except Exception as exc:  # a bug: say so, traceback only with --debug
        if debug:
            traceback.print_exc()
        click.echo(f"Internal error: {type(exc).__name__}: {exc}", err=True)
        click.echo("  next: run again with --debug for the traceback, and report it", err=True)
        sys.exit(2)
    sys.exit(0)


if __name__ == "__main__":
    main()
