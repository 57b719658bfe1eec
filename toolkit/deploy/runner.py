"""Run one Terraform command in a working directory, so that spotkit's death never breaks it.

python-terraform builds the argv (``Terraform.generate_cmd_string``: its option conventions, ``-var``
files, flags). We run that argv ourselves because python-terraform's ``cmd`` can neither pass an
environment of our own (it copies ``os.environ``; we need ``TF_CLI_CONFIG_FILE`` per run) nor stream
lines (its ``synchronous=False`` is read after the argv is built, so it ends up as a flag).

Terraform runs **detached from spotkit**:

- in its own session and process group (``start_new_session``), so a Ctrl-C or a signal to spotkit's
  group does not reach it unasked;
- writing to log files in ``<workdir>/.spotkit-terraform/`` (``<command>.log`` for stdout,
  ``<command>.err`` for stderr) that spotkit follows, never to a pipe that breaks when spotkit dies;
- with a pid file (``terraform.pid``: pid, command, log, start time) while it runs.

So a killed spotkit leaves Terraform to finish and write its state. SIGINT or SIGTERM to spotkit is
passed on to Terraform **once**, as SIGINT (Terraform's graceful stop: it finishes the calls in flight
and writes its state); a second one is not passed on (Terraform would exit at once and could lose
state): spotkit says what is happening and keeps waiting.

Before every command the runner looks at the pid file: a Terraform that is still running in the
working directory (the pid is alive and is a terraform/tofu process) stops the command with
``TerraformStillRunning``, naming the pid, the command, and its log. Failures spotkit can explain (a
stale state lock, "already exists") come with the command that fixes them (``spotkit.deploy.explain``).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

from python_terraform import IsFlagged, Terraform

from spotkit.deploy.binary import TerraformBinary
from spotkit.deploy.explain import explain
from spotkit.errors import ToolkitError
from spotkit.processes import command_line, pid_alive

__all__ = ["IsFlagged", "TerraformRunner", "TerraformResult", "TerraformCommandFailed", "TerraformStillRunning",
           "TerraformInterrupted", "RUN_DIR", "PID_FILE", "running_terraform", "ensure_not_running"]

RUN_DIR = ".spotkit-terraform"
PID_FILE = "terraform.pid"
FOLLOW_INTERVAL = 0.1  # seconds between looks at the log


class TerraformCommandFailed(ToolkitError):
    """A Terraform command exited with an error; the message carries its error output."""


class TerraformStillRunning(ToolkitError):
    """A Terraform started earlier (by a spotkit that is gone) still runs in the working directory."""


class TerraformInterrupted(ToolkitError):
    """spotkit was interrupted; Terraform was asked to stop gracefully and has stopped."""


@dataclass
class TerraformResult:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str


@dataclass(frozen=True)
class RunningTerraform:
    pid: int
    command: str
    log: str
    started: str


def _pid_path(workdir: Path) -> Path:
    return Path(workdir) / RUN_DIR / PID_FILE


def running_terraform(workdir: str | Path) -> RunningTerraform | None:
    """The Terraform recorded in ``workdir``'s pid file, if it still runs (a reused pid does not count)."""
    path = _pid_path(Path(workdir))
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        pid = int(info["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    argv = command_line(pid) if pid > 1 and pid_alive(pid) else None
    if not argv or not any(Path(a).name in ("terraform", "tofu") or a == info.get("binary") for a in argv[:1]):
        return None  # gone (or the pid now belongs to another program)
    return RunningTerraform(pid, str(info.get("command", "?")), str(info.get("log", "")), str(info.get("started", "?")))


def ensure_not_running(workdir: str | Path, stack_hint: str = "the same command") -> None:
    """Raise ``TerraformStillRunning`` (what runs, where, what to do) when a Terraform still runs in ``workdir``."""
    running = running_terraform(workdir)
    if running is None:
        return
    raise TerraformStillRunning(
        f"Terraform is still running in {workdir}: pid {running.pid}, '{running.command}' started at "
        f"{running.started} (spotkit ended before it; it goes on to finish and write its state)",
        hint=f"wait for it to end (follow it: tail -f {running.log}), then run {stack_hint} again; to stop it "
             f"gracefully instead: kill -INT {running.pid}")


class _ArgvBuilder(Terraform):
    """python-terraform for building argv only. Its constructor parses ``terraform.tfstate``, which a
    Terraform running in the directory may be writing (half a file: a JSONDecodeError); spotkit never reads
    state through it, so it reads nothing."""

    def read_state_file(self, file_path=None):
        self.tfstate = None


class TerraformRunner:
    def __init__(self, workdir: str | Path, binary: TerraformBinary, env: Mapping[str, str] | None = None):
        self.workdir = Path(workdir)
        self.binary = binary
        self.env = {**os.environ, "TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1", **dict(env or {})}
        self._tf = _ArgvBuilder(working_dir=str(self.workdir), terraform_bin_path=binary.path)
        self.notice: Callable[[str], None] = lambda text: print(text, file=sys.stderr, flush=True)

    def argv(self, command: str, *args: str, **options) -> list[str]:
        return self._tf.generate_cmd_string(command, *args, **options)

    def run(self, command: str, *args: str, on_line: Callable[[str], None] | None = None,
            ok_codes: tuple[int, ...] = (0,), timeout: float | None = None, **options) -> TerraformResult:
        """Run ``terraform COMMAND [options] [args]``; pass each stdout line to ``on_line`` as it is written.

        Raises ``TerraformStillRunning`` when an earlier Terraform still runs here, ``TerraformInterrupted``
        after a passed-on SIGINT/SIGTERM, and ``TerraformCommandFailed`` (Terraform's error text, explained
        where spotkit can) when the exit code is not in ``ok_codes``. ``timeout`` (seconds, default
        ``SPOTKIT_TERRAFORM_TIMEOUT`` or none) stops a command that hangs (SIGINT, then SIGKILL).
        """
        if timeout is None and os.environ.get("SPOTKIT_TERRAFORM_TIMEOUT"):
            timeout = float(os.environ["SPOTKIT_TERRAFORM_TIMEOUT"])
        ensure_not_running(self.workdir)
        argv = self.argv(command, *args, **options)
        run_dir = self.workdir / RUN_DIR
        run_dir.mkdir(parents=True, exist_ok=True)
        log, err = run_dir / f"{command}.log", run_dir / f"{command}.err"
        with open(log, "w", encoding="utf-8") as out_fh, open(err, "w", encoding="utf-8") as err_fh:
            proc = subprocess.Popen(argv, cwd=self.workdir, env=self.env, stdout=out_fh, stderr=err_fh,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        pid_file = _pid_path(self.workdir)
        pid_file.write_text(json.dumps({
            "pid": proc.pid, "command": f"{self.binary.flavor} {command}", "binary": self.binary.path,
            "log": str(log), "started": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "spotkit_pid": os.getpid()}), encoding="utf-8")
        interrupted = self._follow(proc, log, on_line, timeout)
        pid_file.unlink(missing_ok=True)
        stdout, stderr = log.read_text(encoding="utf-8"), err.read_text(encoding="utf-8")
        result = TerraformResult(argv=argv, returncode=proc.returncode, stdout=stdout, stderr=stderr)
        if interrupted:
            raise TerraformInterrupted(
                f"interrupted: '{self.binary.flavor} {command}' stopped gracefully in {self.workdir} "
                f"(exit {proc.returncode}); what it finished is in its state",
                hint="run the same command again to finish the rest")
        if result.returncode not in ok_codes:
            text = (result.stderr + "\n" + result.stdout)
            explained = explain(text, self.workdir, self.binary.flavor)
            message = (f"'{self.binary.flavor} {command}' failed in {self.workdir} (exit {result.returncode}):\n"
                       + _error_text(result))
            if explained is not None:
                raise TerraformCommandFailed(message + "\n" + explained.message, hint=explained.hint)
            raise TerraformCommandFailed(
                message, hint=f"less {err}   # Terraform's whole error (output: {log}); {self.workdir} keeps the "
                              "files it used")
        return result

    def _follow(self, proc: subprocess.Popen, log: Path, on_line, timeout: float | None) -> bool:
        """Follow the log until Terraform exits; pass SIGINT/SIGTERM on once. True when a signal was passed on."""
        relay = SignalRelay(proc.pid, f"{self.binary.flavor} (pid {proc.pid})", str(log), self.notice)
        on_signal = relay
        previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, on_signal)
        start = time.monotonic()
        stop_sent = False
        try:
            with open(log, encoding="utf-8", errors="replace") as fh:
                pending = ""
                while True:
                    done = proc.poll() is not None
                    chunk = fh.read()
                    if chunk:
                        pending += chunk
                        *lines, pending = pending.split("\n")
                        if on_line is not None:
                            for line in lines:
                                on_line(line)
                    if done:
                        if pending and on_line is not None:
                            on_line(pending)
                        break
                    if timeout and time.monotonic() - start > timeout:
                        if not stop_sent:
                            _signal_group(proc.pid, signal.SIGINT)
                            stop_sent = True
                        elif time.monotonic() - start > timeout + 60:
                            _signal_group(proc.pid, signal.SIGKILL)
                    time.sleep(FOLLOW_INTERVAL)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        proc.wait()
        return relay.forwarded


class SignalRelay:
    """SIGINT/SIGTERM to spotkit while Terraform runs: the first is passed on to Terraform's process group
    as SIGINT (its graceful stop); later ones are not (Terraform would stop at once and could lose state):
    they say what is happening."""

    def __init__(self, pgid: int, name: str, log: str, notice: Callable[[str], None]):
        self.pgid, self.name, self.log, self.notice = pgid, name, log, notice
        self.forwarded = False

    def __call__(self, signum, _frame=None) -> None:
        if not self.forwarded:
            self.forwarded = True
            _signal_group(self.pgid, signal.SIGINT)
            self.notice(f"spotkit: {signal.Signals(signum).name} passed on to {self.name} as a graceful stop; it "
                        f"finishes the calls in flight and writes its state (log: {self.log})")
        else:
            self.notice(f"spotkit: {self.name} is still stopping gracefully and writing its state; spotkit waits "
                        f"for it (an interrupt sent to Terraform itself, kill -INT {self.pgid}, would stop it at "
                        "once and could lose state)")


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass


def _error_text(result: TerraformResult) -> str:
    text = (result.stderr.strip() or result.stdout.strip())
    lines = text.splitlines()
    return "\n".join(lines[-40:])
