"""Start, inspect and stop the embedded AWS emulator (moto server) for a project.

Its files live in ``<project dir>/local/emulator/``: ``state.json`` (pid, port, url, start time, id)
and ``moto.log``. ``start`` is idempotent (a running emulator is reused); ``stop`` ends only the process
recorded there, and only if it still is a moto server.

The emulator runs with ``MOTO_IAM_LOAD_MANAGED_POLICIES=true`` so AWS managed policies
(``AmazonSSMManagedInstanceCore``...) can be attached as on AWS, and with every patch of
``spotkit.rehearsal.local.registry.PATCHES`` (where moto 5.2 answers otherwise than AWS), the same the
tests' moto server applies.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from spotkit.errors import ToolkitError
from spotkit.processes import pid_alive
from spotkit.rehearsal.ports import free_port, port_free

DEFAULT_PORT = 4566
HOST = "127.0.0.1"
PROJECT_DIR_ENV = "SPOTKIT_PROJECT_DIR"


def project_dir(explicit: str | Path | None = None) -> Path:
    """Where spotkit keeps per-project state: ``--project-dir``, ``SPOTKIT_PROJECT_DIR``, else ./.spotkit."""
    return Path(explicit or os.environ.get(PROJECT_DIR_ENV) or ".spotkit").resolve()


@dataclass
class EmulatorState:
    pid: int
    port: int
    url: str
    started_at: float
    instance_id: str
    log: str


@dataclass
class EmulatorStatus:
    running: bool
    state: EmulatorState | None
    detail: str


def _dir(project: Path) -> Path:
    return project / "local" / "emulator"


def _state_file(project: Path) -> Path:
    return _dir(project) / "state.json"


def read_state(project: Path) -> EmulatorState | None:
    try:
        return EmulatorState(**json.loads(_state_file(project).read_text()))
    except (FileNotFoundError, json.JSONDecodeError, TypeError):
        return None


def _pid_is_moto(pid: int) -> bool:
    if not pid_alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return True  # no /proc: trust the pid
    if "moto" not in cmdline and "spotkit.rehearsal.local.server" not in cmdline:
        return False
    try:  # a zombie (exited, not yet reaped) is not running
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return True


def _answers(url: str, timeout: float = 2.0) -> bool:
    """The server accepts connections. (A cheap check: moto's data.json dumps every backend, slow with
    the managed IAM policies loaded.)"""
    host, port = url.rsplit("//", 1)[1].rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return True
    except OSError:
        return False


def status(project: Path) -> EmulatorStatus:
    state = read_state(project)
    if state is None:
        return EmulatorStatus(False, None, "not started")
    if not _pid_is_moto(state.pid):
        return EmulatorStatus(False, state, f"not running (process {state.pid} has exited)")
    if not _answers(state.url):
        return EmulatorStatus(False, state, f"process {state.pid} runs but {state.url} does not answer")
    return EmulatorStatus(True, state, f"running at {state.url} (pid {state.pid})")


def identify(url: str, project: Path | None = None, timeout: float = 10.0) -> str:
    """An id that changes whenever the emulator at ``url`` loses its data (a restart or a reset).

    The emulator this project started (``state.json``, same url, running) is known by the id recorded
    at its start. Any other (started in another project, or by hand) is asked over the wire: moto makes
    a default VPC with a random id when a backend is created, so its id is new after every restart.
    """
    url = url.rstrip("/")
    if project is not None:
        st = status(project)
        if st.running and st.state is not None and st.state.url.rstrip("/") == url:
            return st.state.instance_id
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    from spotkit.runtime.interruption.retries import botocore_config

    client = boto3.client("ec2", region_name="us-east-1", endpoint_url=url, aws_access_key_id="testing",
                          aws_secret_access_key="testing",
                          config=botocore_config("probe", connect_timeout=timeout, read_timeout=timeout))
    try:
        vpcs = client.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]
    except (BotoCoreError, ClientError) as exc:
        raise ToolkitError(f"the emulator at {url} does not answer as an AWS endpoint: {exc}",
                           hint="spotkit local start   # then leave out --endpoint-url: --target local finds it") from exc
    if not vpcs:
        raise ToolkitError(f"the endpoint {url} has no default VPC, so it is not an emulator spotkit can track",
                           hint="spotkit local start   # then leave out --endpoint-url: --target local finds it")
    return "vpc-" + vpcs[0]["VpcId"].split("-", 1)[-1]


def start(project: Path, port: int | None = DEFAULT_PORT, timeout: float = 60.0) -> tuple[EmulatorState, bool]:
    """Start the emulator unless it already runs; return (state, started_now).

    ``port=None`` (the drill and the demo): ``DEFAULT_PORT`` when it is free, else any free port; a
    port given is used or refused (``spotkit local start --port``)."""
    current = status(project)
    if current.running and current.state is not None:
        return current.state, False
    from spotkit import extras

    extras.require("local")
    if port is None:
        port = DEFAULT_PORT if port_free(DEFAULT_PORT, HOST) else free_port(HOST)
    elif not port_free(port, HOST):
        raise ToolkitError(f"port {port} on {HOST} is in use by another program",
                           hint=f"spotkit local start --port {free_port(HOST)}   # a port that is free now")
    d = _dir(project)
    d.mkdir(parents=True, exist_ok=True)
    log_path = d / "moto.log"
    env = {**os.environ, "MOTO_IAM_LOAD_MANAGED_POLICIES": "true"}
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "spotkit.rehearsal.local.server", "-H", HOST, "-p", str(port)],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                start_new_session=True)
    url = f"http://{HOST}:{port}"
    state = EmulatorState(pid=proc.pid, port=port, url=url, started_at=time.time(),
                          instance_id=uuid.uuid4().hex[:12], log=str(log_path))
    deadline = time.monotonic() + timeout
    while not _answers(url, timeout=1.0):
        if proc.poll() is not None:
            raise ToolkitError(f"the emulator exited at start (exit {proc.returncode}); see {log_path}",
                               hint=f"read {log_path} for the cause")
        if time.monotonic() > deadline:
            proc.terminate()
            raise ToolkitError(f"the emulator did not answer on {url} within {timeout:.0f} s; see {log_path}")
        time.sleep(0.2)
    _state_file(project).write_text(json.dumps(asdict(state), indent=2))
    return state, True


def stop(project: Path, timeout: float = 15.0) -> EmulatorState | None:
    """Stop the recorded emulator; return its state, or None when none was running."""
    state = read_state(project)
    if state is None:
        return None
    if _pid_is_moto(state.pid):
        os.kill(state.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _pid_is_moto(state.pid) and time.monotonic() < deadline:
            _reap(state.pid)
            time.sleep(0.1)
        if _pid_is_moto(state.pid):
            os.kill(state.pid, signal.SIGKILL)
        _reap(state.pid)
    _state_file(project).unlink(missing_ok=True)
    return state


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
