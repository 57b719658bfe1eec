"""Run the real ``spotkit`` entry point in-process: exit code, stdout and stderr, as a user sees them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class CliRun:
    code: int
    out: str
    err: str

    @property
    def next_lines(self) -> list[str]:
        """The ``next:`` steps printed (stdout and stderr), without the prefix."""
        lines = (self.out + "\n" + self.err).splitlines()
        return [line.split("next:", 1)[1].strip() for line in lines if line.strip().startswith("next:")]


def run_spotkit(capsys, *argv: str) -> CliRun:
    from spotkit.cli.main import main

    capsys.readouterr()
    try:
        main(list(argv))
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return CliRun(code, captured.out, captured.err)
