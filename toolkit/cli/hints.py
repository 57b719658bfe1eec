"""``next:`` lines that work when pasted into the user's own shell.

Every hint is written as ``spotkit ...``. When the ``spotkit`` that runs is not the one the shell finds
on ``PATH`` (``make demo`` runs ``.venv/bin/spotkit`` and the venv is not active), ``paste_ready``
writes the commands with the path that runs this very spotkit instead (``.venv/bin/spotkit ...``,
relative to the current folder when it lies inside it), so a pasted line runs the same program; and
``pip install`` becomes that venv's pip, so an extra lands where spotkit is.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

import click

# "spotkit" as a command word: at the start, or after a shell separator / an opening quote; followed by a
# space and a subcommand or an option. (Not "spotkit[local]", "spotkit:tier", "spotkit's".)
_COMMAND = re.compile(r"(^|&& |\|\| |; |\$\(|'|`|: )spotkit(?= [a-z-])")
# "pip install": the pip of the venv spotkit runs from, when that venv is not the shell's.
_PIP = re.compile(r"(^|&& |; )pip(?= install )")


def program(argv0: str | None = None, path: str | None = None, cwd: Path | None = None) -> str:
    """How the user's shell runs this spotkit: ``spotkit`` when PATH finds it, else its path."""
    argv0 = argv0 if argv0 is not None else sys.argv[0]
    if not argv0 or Path(argv0).name != "spotkit":  # python -m spotkit.cli.main, tests: the installed name
        return "spotkit"
    search = path if path is not None else os.environ.get("PATH", os.defpath)
    running = Path(argv0) if "/" in argv0 else Path(shutil.which(argv0, path=search) or argv0)
    on_path = shutil.which("spotkit", path=search)
    if on_path is not None and Path(on_path).resolve() == running.resolve():
        return "spotkit"
    running = running.absolute()
    try:
        relative = str(running.relative_to((cwd or Path.cwd()).absolute()))
        return relative if "/" in relative else f"./{relative}"
    except ValueError:
        return str(running)


def paste_ready(hint: str, prog: str | None = None, cwd: Path | None = None) -> str:
    """``hint`` with each ``spotkit`` command written the way this shell runs it."""
    prog = prog or program()
    if prog == "spotkit":
        return hint
    hint = _COMMAND.sub(lambda m: m.group(1) + prog, hint)
    pip = str(Path(prog).parent / "pip")
    if ((cwd or Path.cwd()) / pip).is_file():
        hint = _PIP.sub(lambda m: m.group(1) + pip, hint)
    return hint


def not_on_path_note(prog: str | None = None, cwd: Path | None = None) -> str | None:
    """A line saying that spotkit is not on PATH and how the hints run it, or None when it is."""
    prog = prog or program()
    if prog == "spotkit":
        return None
    activate = Path(prog).parent / "activate"
    tail = f" (or run '. {activate}' first, then type plain 'spotkit')" \
        if ((cwd or Path.cwd()) / activate).is_file() else ""
    return f"note: 'spotkit' is not on your PATH: the commands below run it as {prog}{tail}"


def echo_next(hint: str, err: bool = False, indent: str = "") -> None:
    """Print one ``next:`` line, paste-ready."""
    click.echo(f"{indent}next: {paste_ready(hint)}", err=err)


# The command line being run (``main`` records it), so a hint can repeat it with one option changed.
_ARGS: list[str] = []


def record_command_line(args: list[str]) -> None:
    _ARGS[:] = list(args)


def rerun(**options: str) -> str:
    """The command being run, as typed, with ``options`` set (``rerun(journal_dir="x")`` sets --journal-dir x)."""
    import shlex

    args = list(_ARGS)
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        for i, arg in enumerate(args):
            if arg == flag and i + 1 < len(args):
                args[i + 1] = value
                break
            if arg.startswith(flag + "="):
                args[i] = f"{flag}={value}"
                break
        else:
            args += [flag, value]
    return shlex.join(["spotkit", *args])
