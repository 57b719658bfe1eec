"""What the metadata emulators share: a threaded loopback server and its lifecycle (``EmulatorServer``, for
AWS, GCP and Azure alike); JSON replies (``MetadataHandler``, for GCP and Azure).

Each emulator keeps its state in one object guarded by ``lock``; the control API lives under ``/spotkit/``
(never a real metadata path), as in ``spotkit.rehearsal.imds.emulator``.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        """A client that hangs up mid-request (an agent stopping) is normal here: stay quiet unless verbose."""
        if getattr(self, "verbose", False):
            super().handle_error(request, client_address)


class MetadataHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    @property
    def state(self):
        return self.server.state  # type: ignore[attr-defined]

    def log_message(self, format, *args):  # noqa: A002 - quiet unless asked
        if getattr(self.server, "verbose", False):
            super().log_message(format, *args)

    def send_body(self, status: int, body: str = "", content_type: str = "text/plain",
                  headers: Optional[dict] = None) -> None:
        data = body.encode()
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def send_json(self, status: int, doc, headers: Optional[dict] = None) -> None:
        self.send_body(status, json.dumps(doc), "application/json", headers)

    def read_json(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        return json.loads(raw) if raw.strip() else {}


class EmulatorServer:
    """A handler class and its state on a loopback port, in a background thread (context manager)."""

    name = "metadata-emulator"

    def __init__(self, handler: type, state, host: str = "127.0.0.1", port: int = 0, verbose: bool = False):
        self._server = _QuietServer((host, port), handler)
        self._server.state = state  # type: ignore[attr-defined]
        self._server.verbose = verbose  # type: ignore[attr-defined]
        self._thread: Optional[threading.Thread] = None

    @property
    def state(self):
        return self._server.state  # type: ignore[attr-defined]

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{self._server.server_address[0]}:{self.port}"

    def start(self):
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name=self.name, daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever(poll_interval=0.5)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
