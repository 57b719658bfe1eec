"""Entry point of ``spotkit``: global options, command registration, and error handling.

Exit codes (docs/install.md lists them for users), one per kind of ending:

- 0: done;
- 1: a user error. A ``ToolkitError`` exits 1 with its message and a next step and no traceback; so do
  the failures the user can act on that other libraries raise (``user_error``: botocore's missing
  credentials and unreachable endpoints, files that cannot be written, a full disk, an optional extra
  that is not installed), and a confirmation prompt answered "no" or with Ctrl-C;
- 2: a usage error (click: unknown option, missing argument), and ``plan --detailed-exitcode``'s
  "there are changes", as Terraform has it;
- ``EXIT_BUG`` (3): a bug. A one-line message, and the traceback only under ``--debug``;
- 130: interrupted (Ctrl-C) while working.

The global options are accepted before the command (``spotkit --endpoint-url URL status``) and, as
AWS CLI users type them, after it (``spotkit status --endpoint-url URL``).
"""

from __future__ import annotations

import errno
import importlib
import os
import shlex
import sys
import traceback
from typing import Any

import click

from spotkit import __version__
from spotkit.aws import option_value, user_error as aws_user_error
from spotkit.cli.context import CliContext
from spotkit.cli.hints import echo_next, record_command_line, rerun
from spotkit.errors import ToolkitError
from spotkit.extras import missing_extra

EXIT_BUG = 3  # not 2: click's usage errors and plan --detailed-exitcode's "changes" use 2

# Each module defines click commands and a ``register(group)`` function. The group imports a module only
# when one of its commands runs (or help lists them all): ``spotkit check`` never loads boto3, Terraform's
# driver or the agent. ``COMMANDS`` maps each top-level command to its module (a test keeps it complete).
COMMAND_MODULES = [
    "spotkit.cli.stacks_cmd",
    "spotkit.cli.deploy_cmd",
    "spotkit.cli.local_cmd",
    "spotkit.cli.agent_cmd",
    "spotkit.cli.recover_cmd",
    "spotkit.cli.k8s_cmd",
    "spotkit.cli.check_cmd",
    "spotkit.cli.drill_cmd",
    "spotkit.cli.events_cmd",
    "spotkit.cli.demo_cmd",
    "spotkit.cli.interrupt_cmd",
    "spotkit.cli.simulate_cmd",
]
COMMANDS = {
    "stacks": "spotkit.cli.stacks_cmd", "synth": "spotkit.cli.stacks_cmd",
    "plan": "spotkit.cli.deploy_cmd", "apply": "spotkit.cli.deploy_cmd", "destroy": "spotkit.cli.deploy_cmd",
    "output": "spotkit.cli.deploy_cmd",
    "local": "spotkit.cli.local_cmd",
    "agent": "spotkit.cli.agent_cmd", "imds-mock": "spotkit.cli.agent_cmd",
    "recover": "spotkit.cli.recover_cmd", "status": "spotkit.cli.recover_cmd",
    "k8s": "spotkit.cli.k8s_cmd",
    "check": "spotkit.cli.check_cmd",
    "drill": "spotkit.cli.drill_cmd",
    "handle-events": "spotkit.cli.events_cmd",
    "demo": "spotkit.cli.demo_cmd",
    "interrupt": "spotkit.cli.interrupt_cmd",
    "simulate": "spotkit.cli.simulate_cmd",
}


class LazyGroup(click.Group):
    """A group whose command modules are imported on first use (see ``COMMANDS``)."""

    _loaded: set

    def _load(self, module: str) -> None:
        loaded = self.__dict__.setdefault("_loaded", set())
        if module in loaded:
            return
        loaded.add(module)
        before = set(self.commands)
        importlib.import_module(module).register(self)
        for name in set(self.commands) - before:
            accept_global_options_after(self.commands[name])

    def get_command(self, ctx: click.Context, cmd_name: str):
        if cmd_name not in self.commands:
            module = COMMANDS.get(cmd_name)
            for name in [module] if module else COMMAND_MODULES:
                self._load(name)
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx: click.Context):
        for name in COMMAND_MODULES:
            self._load(name)
        return super().list_commands(ctx)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
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
    """spotkit: run AI training and inference on spot capacity without losing work.

    The global options also work after the command: spotkit status --endpoint-url URL.
    """
    ctx.obj = CliContext(region=region, profile=profile, endpoint_url=endpoint_url, output=output,
                         debug=debug, config_path=config_path)


def _late_global(attr: str):
    """Callback of a global option given after the command: it sets the same CliContext field."""

    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> None:
        if value is None or value is False:
            return
        obj = ctx.find_object(CliContext)
        if obj is not None:
            setattr(obj, attr, value)

    return callback


def accept_global_options_after(command: click.Command) -> None:
    """Give ``command`` (and its subcommands) hidden copies of the global options.

    A copy has no default and no environment variable, so it only changes what was typed after the
    command; one a command defines itself (none today) keeps its own meaning.
    """
    for param in cli.params:
        if not isinstance(param, click.Option) or param.name in ("version", "help"):
            continue
        attr = param.name
        taken = {o for p in command.params for o in getattr(p, "opts", [])}
        opts = [o for o in param.opts if o not in taken]
        if not opts:
            continue
        kwargs: dict[str, Any] = dict(hidden=True, expose_value=False, callback=_late_global(attr), default=None)
        if param.is_flag:
            kwargs.update(is_flag=True, default=False)
        else:
            kwargs["type"] = param.type
        command.params.append(click.Option(opts, **kwargs))
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            accept_global_options_after(sub)


def user_error(exc: BaseException, argv: list[str]) -> ToolkitError | None:
    """A ToolkitError for a failure the user can act on that is not one already, else None (a bug)."""
    extra = missing_extra(exc)
    if extra is not None:
        return extra
    endpoint = option_value(argv, "--endpoint-url") or os.environ.get("SPOTKIT_ENDPOINT_URL")
    mapped = aws_user_error(exc, endpoint, command=shlex.join(["spotkit", *argv]))
    if mapped is not None:
        return mapped
    if isinstance(exc, ConnectionError):  # raw sockets (the emulator's own HTTP API, IMDS...)
        return ToolkitError(f"could not connect: {exc}",
                            hint="spotkit local status   # is the emulator running?")
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        where = f" while writing {exc.filename}" if exc.filename else ""
        folder = os.path.dirname(os.path.abspath(exc.filename)) if exc.filename else "."
        return ToolkitError(f"the disk is full{where}: {exc.strerror}",
                            hint=f"df -h {shlex.quote(folder)}   # free space there, then run the command again")
    if isinstance(exc, OSError) and exc.filename and exc.errno in (
            errno.EACCES, errno.EPERM, errno.ENOENT, errno.EROFS, errno.ENOTDIR, errno.EISDIR, errno.ENOSPC,
            errno.EEXIST):
        option = _option_for_path(argv, str(exc.filename))
        if option is not None:  # the same command, with that option in a folder the user can write to
            hint = rerun(**{option.lstrip("-").replace("-", "_"): "./spotkit-out"}) + "   # a folder you can write to"
        else:
            hint = f"ls -ld {shlex.quote(os.path.dirname(os.path.abspath(str(exc.filename))))}   # a folder you can " \
                   "write to? (fix its permissions, or run where you can write)"
        return ToolkitError(f"cannot use the path {exc.filename}: {exc.strerror}", hint=hint)
    return None


def _option_for_path(argv: list[str], filename: str) -> str | None:
    """The option of ``argv`` whose value is ``filename`` or a folder holding it (``--out DIR``), or None."""
    target = os.path.abspath(filename)
    for i, arg in enumerate(argv):
        name, value = (arg.split("=", 1) if arg.startswith("--") and "=" in arg else
                       (arg, argv[i + 1] if arg.startswith("--") and i + 1 < len(argv) else None))
        if value is None or value.startswith("-"):
            continue
        path = os.path.abspath(value)
        if target == path or target.startswith(path.rstrip(os.sep) + os.sep):
            return name
    return None


def check_region_option(args: list[str]) -> None:
    """Refuse an unknown --region (or AWS_REGION) before any work, with the command that has the closest one."""
    from spotkit.config import aws_regions, check_region
    from spotkit.errors import ConfigError

    given = option_value(args, "--region")
    source = "--region" if given is not None else "AWS_REGION"
    value = given if given is not None else os.environ.get("AWS_REGION")
    if not value:
        return
    try:
        check_region(value, source)
    except ConfigError as exc:
        import difflib

        best = (difflib.get_close_matches(value, aws_regions(), n=1, cutoff=0.6) or ["us-east-1"])[0]
        if given is not None:
            fixed = [best if a == value and i and args[i - 1] == "--region" else
                     (f"--region={best}" if a == f"--region={value}" else a) for i, a in enumerate(args)]
            exc.hint = shlex.join(["spotkit", *fixed]) + "   # the closest region; " + exc.hint
        else:
            exc.hint = f"export AWS_REGION={best}   # the closest region; " + exc.hint
        raise


def _report(exc: ToolkitError, debug: bool) -> None:
    if debug:
        traceback.print_exc()
    click.echo(f"Error: {exc.message}", err=True)
    if exc.hint:
        echo_next(exc.hint, err=True, indent="  ")


def _interrupted(args: list[str]) -> None:
    click.echo("Interrupted (Ctrl-C) while working: what finished before stays done, the rest was not done.",
               err=True)
    echo_next(f"{shlex.join(['spotkit', *args])}   # run it again to finish (runbooks resume from their journal)",
              err=True, indent="  ")
    sys.exit(130)


def main(argv: list[str] | None = None) -> None:
    args = list(argv if argv is not None else sys.argv[1:])
    debug = "--debug" in args or bool(os.environ.get("SPOTKIT_DEBUG"))
    record_command_line(args)
    try:
        check_region_option(args)
        cli.main(args=argv, prog_name="spotkit", standalone_mode=False)
    except click.exceptions.Abort as exc:
        if isinstance(exc.__cause__, KeyboardInterrupt):  # click turns a Ctrl-C while working into Abort
            _interrupted(args)
        # a confirmation prompt answered "no", with Ctrl-C or end of input (click raises Abort from None)
        click.echo("Aborted at the confirmation prompt: nothing was changed.", err=True)
        if "--yes" not in args:
            echo_next(f"{shlex.join(['spotkit', *args, '--yes'])}   # to go ahead without the prompt",
                      err=True, indent="  ")
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except ToolkitError as exc:
        if not exc.hint:  # every user error ends with a step that runs when pasted
            exc.hint = f"{shlex.join(['spotkit', *args])}   # again, after fixing what the message names"
        _report(exc, debug)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        _interrupted(args)
    except Exception as exc:  # a bug: say so, traceback only with --debug
        mapped = user_error(exc, args)
        if mapped is not None:
            _report(mapped, debug)
            sys.exit(mapped.exit_code)
        if debug:
            traceback.print_exc()
        click.echo(f"Internal error: {type(exc).__name__}: {exc}", err=True)
        echo_next(f"{shlex.join(['spotkit', '--debug', *args])}   # shows the traceback to report",
                  err=True, indent="  ")
        sys.exit(EXIT_BUG)
    sys.exit(0)


if __name__ == "__main__":
    main()
