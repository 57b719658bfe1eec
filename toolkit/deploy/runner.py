"""Run one Terraform command in a working directory.

python-terraform builds the argv (``Terraform.generate_cmd_string``: its option conventions, ``-var``
files, flags). We run that argv ourselves because python-terraform's ``cmd`` can neither pass an
environment of our own (it copies ``os.environ``; we need ``TF_CLI_CONFIG_FILE`` per run) nor stream
lines (its ``synchronous=False`` is read after the argv is built, so it ends up as a flag).
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

from python_terraform import IsFlagged, Terraform

from toolkit.deploy.binary import TerraformBinary
from toolkit.errors import ToolkitError

__all__ = ["IsFlagged", "TerraformRunner", "TerraformResult", "TerraformCommandFailed"]


class TerraformCommandFailed(ToolkitError):
    """A Terraform command exited with an error; the message carries its error output."""


@dataclass
class TerraformResult:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str


class TerraformRunner:
    def __init__(self, workdir: str | Path, binary: TerraformBinary, env: Mapping[str, str] | None = None):
        self.workdir = Path(workdir)
        self.binary = binary
        self.env = {**os.environ, "TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1", **dict(env or {})}
        self._tf = Terraform(working_dir=str(self.workdir), terraform_bin_path=binary.path)

    def argv(self, command: str, *args: str, **options) -> list[str]:
        return self._tf.generate_cmd_string(command, *args, **options)

    def run(self, command: str, *args: str, on_line: Callable[[str], None] | None = None,
            ok_codes: tuple[int, ...] = (0,), timeout: float | None = None, **options) -> TerraformResult:
        """Run ``terraform COMMAND [options] [args]``; stream stdout lines to ``on_line`` if given.

        Raises ``TerraformCommandFailed`` (with Terraform's error text) when the exit code is not in
        ``ok_codes``. ``timeout`` (seconds, default ``SPOTKIT_TERRAFORM_TIMEOUT`` or none) ends a command
        that hangs (e.g. a provider retrying a call the emulator does not implement).
        """
        if timeout is None and os.environ.get("SPOTKIT_TERRAFORM_TIMEOUT"):
            timeout = float(os.environ["SPOTKIT_TERRAFORM_TIMEOUT"])
        timer = None
        argv = self.argv(command, *args, **options)
        proc = subprocess.Popen(argv, cwd=self.workdir, env=self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
        out_lines: list[str] = []
        if timeout:
            import threading

            timer = threading.Timer(timeout, proc.terminate)
            timer.start()
        if on_line is not None:
            assert proc.stdout is not None
            for line in proc.stdout:
                out_lines.append(line)
                on_line(line.rstrip("\n"))
            stderr = proc.stderr.read() if proc.stderr else ""
            proc.wait()
            stdout = "".join(out_lines)
        else:
            stdout, stderr = proc.communicate()
        if timer is not None:
            timer.cancel()
        result = TerraformResult(argv=argv, returncode=proc.returncode, stdout=stdout, stderr=stderr)
        if result.returncode not in ok_codes:
            raise TerraformCommandFailed(
                f"'{self.binary.flavor} {command}' failed in {self.workdir} (exit {result.returncode}):\n"
                + _error_text(result),
                hint="fix the error above; the working directory keeps the files Terraform used",
            )
        return result


def _error_text(result: TerraformResult) -> str:
    text = (result.stderr.strip() or result.stdout.strip())
    lines = text.splitlines()
    return "\n".join(lines[-40:])
