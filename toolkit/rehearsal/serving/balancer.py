"""The load balancer in front of the replicas: HAProxy (Debian's ``haproxy``), standing in for the ALB.

What maps to what:

- the ALB's target group health check (``/health``, interval, healthy/unhealthy thresholds) is
  HAProxy's active check (``option httpchk GET /health``, ``inter``, ``rise``, ``fall``);
- registering a target is enabling a server slot at the replica's address (``set server be/s addr``,
  then ``state ready``: it takes traffic once ``rise`` checks pass);
- deregistration with its delay is ``set server be/s state drain`` (no new requests, in-flight ones
  go on) followed by ``state maint`` once the slot has no session left (the deregistration delay is
  how long the hand-off lets that take);
- the ALB does not retry a request on another target when its connection fails (it answers 502), so
  neither does this one: ``retries 0``, no ``option redispatch``.
- the ALB forwards a streamed response as it comes: ``option http-no-delay`` (without it HAProxy
  coalesces small writes and each token arrives up to ~200 ms late).

Server slots are declared in the configuration, disabled, and filled at run time through the runtime
API (the stats socket, ``level admin``): HAProxy 2.6's ``add server`` cannot enable health checks on a
server it adds.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from spotkit.errors import MissingDependencyError, ToolkitError
from spotkit.rehearsal.ports import free_port, port_free

INSTALL_HINT = "sudo apt-get install -y haproxy"
FALLBACK_PATHS = ("/usr/sbin/haproxy", "/usr/local/sbin/haproxy")  # sbin is often off a user's PATH
BACKEND = "replicas"


def find_haproxy() -> str:
    """The path of ``haproxy``, or a one-line error saying how to install it."""
    path = shutil.which("haproxy") or next((p for p in FALLBACK_PATHS if os.access(p, os.X_OK)), None)
    if not path:
        raise MissingDependencyError(
            "the serve drill needs HAProxy (the load balancer in front of the replicas) and haproxy is not "
            "installed", hint=f"{INSTALL_HINT}   # Debian/Ubuntu; then: spotkit drill --workload serve")
    return path


def check_port(port: int) -> None:
    """A one-line error when the balancer's chosen port is taken (0: any free port, never taken)."""
    if port and not port_free(port):
        raise ToolkitError(f"port {port} is in use: the serve drill's load balancer cannot listen on it",
                           hint="spotkit drill --workload serve --port 0   # any free port")


@dataclass(frozen=True)
class BalancerSettings:
    """- ``port``: the listening port (0: any free port). ``slots``: server slots (replicas + replacements).
    - ``check_interval``: seconds between health checks (ALB: 15 s, the stack's). ``rise`` / ``fall``:
      checks in a row to go healthy / unhealthy (ALB: 2 / 3, the stack's).
    """

    port: int = 0
    slots: int = 16
    check_interval: float = 0.25
    rise: int = 2
    fall: int = 3

    def config(self, port: int, socket_path: Path) -> str:
        ms = max(10, int(self.check_interval * 1000))
        servers = "\n".join(f"    server s{n} 127.0.0.1:9 disabled" for n in range(1, self.slots + 1))
        return f"""global
    stats socket {socket_path} mode 600 level admin
    maxconn 4096

defaults
    mode http
    timeout connect 1s
    timeout client 60s
    timeout server 60s
    timeout http-request 10s
    retries 0
    option http-server-close
    option http-no-delay

frontend serve
    bind 127.0.0.1:{port}
    default_backend {BACKEND}

backend {BACKEND}
    balance roundrobin
    option httpchk GET /health
    http-check expect status 200
    default-server check inter {ms} fastinter {ms} downinter {ms} rise {self.rise} fall {self.fall}
{servers}
"""


class Balancer:
    """HAProxy in its own session, with its runtime API. ``start()`` / ``stop()`` or a context manager."""

    def __init__(self, settings: BalancerSettings, workdir: Path):
        self.settings = settings
        self.workdir = Path(workdir)
        self.binary = find_haproxy()
        # A unix socket path is at most 107 bytes: keep it short, whatever the working directory.
        self._socket_dir = Path(tempfile.mkdtemp(prefix="spotkit-lb-"))
        self.socket_path = self._socket_dir / "haproxy.sock"
        self.proc: Optional[subprocess.Popen] = None
        self.port = settings.port
        self._free = [f"s{n}" for n in range(1, settings.slots + 1)]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "Balancer":
        check_port(self.port)
        self.port = self.port or free_port()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.socket_path.unlink(missing_ok=True)
        cfg = self.workdir / "haproxy.cfg"
        cfg.write_text(self.settings.config(self.port, self.socket_path))
        log = open(self.workdir / "haproxy.log", "wb")
        self.proc = subprocess.Popen([self.binary, "-db", "-f", str(cfg)], stdin=subprocess.DEVNULL, stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.time() + 10
        while time.time() < deadline:
            if self.proc.poll() is not None:
                tail = (self.workdir / "haproxy.log").read_text(errors="replace").strip().splitlines()[-1:]
                raise ToolkitError(f"haproxy exited at start ({tail[0] if tail else 'no output'})",
                                   hint=f"cat {self.workdir / 'haproxy.log'}")
            if self.socket_path.exists():
                try:
                    self.command("show info")
                    return self
                except OSError:
                    pass
            time.sleep(0.05)
        self.stop()
        raise ToolkitError("haproxy did not open its runtime API within 10 s",
                           hint=f"cat {self.workdir / 'haproxy.log'}")

    def stop(self) -> None:
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
        shutil.rmtree(self._socket_dir, ignore_errors=True)

    def __enter__(self) -> "Balancer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- runtime API ---------------------------------------------------------------------------

    def command(self, line: str) -> str:
        return runtime_command(self.socket_path, line)

    def register(self, port: int) -> str:
        """Put a replica at ``127.0.0.1:port`` in a free slot; it takes traffic after ``rise`` good checks."""
        if not self._free:
            raise ToolkitError(f"no free server slot left in the balancer ({self.settings.slots})")
        slot = self._free.pop(0)
        # Down until `rise` checks pass: a slot leaving maintenance would otherwise count as up at once.
        for line in (f"set server {BACKEND}/{slot} addr 127.0.0.1 port {port}",
                     f"set server {BACKEND}/{slot} state drain",
                     f"set server {BACKEND}/{slot} health down",
                     f"set server {BACKEND}/{slot} state ready"):
            out = self.command(line).strip()
            if out and "changed" not in out.lower():  # (state/health changes answer nothing)
                raise ToolkitError(f"haproxy refused `{line}`: {out}")
        return slot

    def set_state(self, slot: str, state: str) -> None:
        set_server_state(self.socket_path, slot, state)

    def servers(self) -> dict[str, dict]:
        return server_stats(self.socket_path)


def runtime_command(socket_path: Path, line: str, timeout: float = 2.0) -> str:
    """One command on HAProxy's runtime API (the stats socket); its answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(socket_path))
        s.sendall(line.encode() + b"\n")
        chunks = []
        while True:
            data = s.recv(65536)
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks).decode(errors="replace")


def set_server_state(socket_path: Path, slot: str, state: str) -> None:
    """``ready``, ``drain`` (no new request, in-flight ones finish) or ``maint`` (out)."""
    if state not in ("ready", "drain", "maint"):
        raise ValueError(f"state must be ready, drain or maint (got {state!r})")
    out = runtime_command(socket_path, f"set server {BACKEND}/{slot} state {state}").strip()
    if out:
        raise ToolkitError(f"haproxy refused to set {slot} {state}: {out}")


def server_stats(socket_path: Path) -> dict[str, dict]:
    """Per server slot of the backend: ``status`` (UP, DOWN, MAINT, DRAIN, ...), ``scur`` (sessions now)."""
    text = runtime_command(socket_path, "show stat").lstrip("# ")
    out = {}
    for row in csv.DictReader(io.StringIO(text)):
        if row.get("pxname") == BACKEND and row.get("svname") not in ("BACKEND", "FRONTEND"):
            out[row["svname"]] = {"status": row.get("status", ""), "scur": int(row.get("scur") or 0),
                                  "addr": row.get("addr", "")}
    return out
