"""Free loopback ports and waiting for a server to accept connections."""

from __future__ import annotations

import socket
import time

from spotkit.rehearsal.ports import free_port  # noqa: F401  (the one free-port finder; tests import it from here)




def wait_for_port(port: int, host: str = "127.0.0.1", timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")
