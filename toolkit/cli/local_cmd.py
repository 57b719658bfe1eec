"""``spotkit local start|status|stop``: the embedded AWS emulator for ``--target local``."""

from __future__ import annotations

import click

from spotkit.cli.context import CliContext, pass_ctx
from spotkit.cli.hints import echo_next
from spotkit.rehearsal.local import emulator
from spotkit.output import emit_json

_project = click.option("--project-dir", type=click.Path(file_okay=False), envvar="SPOTKIT_PROJECT_DIR",
                        help="Where the emulator keeps its pid, state and log (default ./.spotkit).")


@click.group("local")
def local_group():
    """The local target: an AWS emulator (moto server) on 127.0.0.1."""


def _local_command(name: str):
    """A subcommand of ``spotkit local``: it takes --project-dir (first among its options) and the CLI context."""
    def decorate(fn):
        return local_group.command(name)(_project(pass_ctx(fn)))
    return decorate


@_local_command("start")
@click.option("--port", type=click.IntRange(1, 65535), default=emulator.DEFAULT_PORT, show_default=True)
def start_command(ctx: CliContext, project_dir, port):
    """Start the emulator (a running one is reused)."""
    state, started = emulator.start(emulator.project_dir(project_dir), port=port)
    if ctx.json:
        emit_json({"started": started, **state.__dict__})
        return
    word = "started" if started else "already running"
    click.echo(f"local: emulator {word} at {state.url} (pid {state.pid}, log {state.log})")
    echo_next("spotkit apply training --target local --yes")


@_local_command("status")
def status_command(ctx: CliContext, project_dir):
    """Say whether the emulator runs, and where."""
    st = emulator.status(emulator.project_dir(project_dir))
    if ctx.json:
        emit_json({"running": st.running, "detail": st.detail, "state": st.state.__dict__ if st.state else None})
        return
    click.echo(f"local: emulator {st.detail}")


@_local_command("stop")
def stop_command(ctx: CliContext, project_dir):
    """Stop the emulator (everything it held is gone)."""
    state = emulator.stop(emulator.project_dir(project_dir))
    if ctx.json:
        emit_json({"stopped": state is not None, "pid": state.pid if state else None})
        return
    click.echo(f"local: emulator stopped (pid {state.pid})" if state else "local: no emulator was running")


def register(group: click.Group) -> None:
    group.add_command(local_group)
