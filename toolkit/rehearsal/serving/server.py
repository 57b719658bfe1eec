"""One inference replica: an OpenAI-style HTTP server over ``spotkit.rehearsal.serving.model``.

- ``POST /v1/completions`` ``{"prompt": "...", "max_tokens": 16, "stream": false, "seed": 0}``: a
  ``text_completion`` object, or with ``"stream": true`` server-sent events (``data: {...}`` per token,
  then ``data: [DONE]``), as vLLM and the OpenAI API send them. 503 while the model loads or the
  replica stops.
- ``GET /health``: 200 once the model is loaded, 503 before and once the replica is stopping (what the
  load balancer's health check reads).

Each token takes ``token_seconds``, longer when more requests share the replica
(``x (1 + batch_slowdown x (active - 1))``, the way a batching server slows down with its batch).
``load_seconds`` is the model load at start-up (the weights of a real server; the bigram model itself
builds in well under a second and counts toward it).

On SIGTERM the replica stops taking connections, lets its in-flight requests finish (up to
``stop_timeout`` seconds, ECS's stopTimeout) and exits 0; SIGKILL (the reclaim) cuts them.

    python -m spotkit.rehearsal.serving.server --port 8000 [--token-seconds 0.04] [--load-seconds 1]
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:  # the model (numpy) loads after the server starts, in serve()
    from spotkit.rehearsal.serving.model import BigramModel

MODEL_NAME = "spotkit-bigram-pydoc"


@dataclass(eq=False)
class ReplicaState:
    """The replica's state, shared by its request threads; ``idle`` is notified when a request ends."""

    token_seconds: float
    batch_slowdown: float
    name: str
    model: Optional[BigramModel] = None  # loaded after the server starts (the weights' load)
    ready: bool = False
    stopping: bool = False
    active: int = 0  # requests in progress
    lock: threading.Lock = field(default_factory=threading.Lock)
    idle: threading.Condition = field(init=False)

    def __post_init__(self) -> None:
        self.idle = threading.Condition(self.lock)

    def token_delay(self) -> float:
        return self.token_seconds * (1 + self.batch_slowdown * max(0, self.active - 1))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "spotkit-replica"
    disable_nagle_algorithm = True  # each token leaves at once (Nagle + delayed ACK would hold it ~40-200 ms)

    @property
    def state(self) -> ReplicaState:
        return self.server.state  # type: ignore[attr-defined]

    def log_message(self, format, *args):  # noqa: A002 - the drill reads the load generator's records
        pass

    def _send(self, status: int, doc: dict) -> None:
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Replica", self.state.name)
        if self.state.stopping:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802
        if self.path.split("?")[0] != "/health":
            return self._send(404, {"error": {"message": f"no route {self.path}"}})
        s = self.state
        if s.ready and not s.stopping:
            return self._send(200, {"status": "ok", "replica": s.name})
        return self._send(503, {"status": "stopping" if s.stopping else "loading", "replica": s.name})

    def do_POST(self):  # noqa: N802
        if self.path.split("?")[0] != "/v1/completions":
            return self._send(404, {"error": {"message": f"no route {self.path}"}})
        try:
            length = int(self.headers.get("Content-Length") or 0)
            req = json.loads(self.rfile.read(length) or b"{}")
            prompt = str(req.get("prompt", ""))
            max_tokens = int(req.get("max_tokens", 16))
            stream = bool(req.get("stream", False))
            seed = int(req.get("seed", 0))
            if not 1 <= max_tokens <= 4096:
                raise ValueError("max_tokens must be 1-4096")
        except (ValueError, TypeError) as exc:
            return self._send(400, {"error": {"message": f"bad request: {exc}", "type": "invalid_request_error"}})
        s = self.state
        with s.lock:
            if not s.ready or s.stopping:
                busy = True
            else:
                busy = False
                s.active += 1
        if busy:
            return self._send(503, {"error": {"message": "replica not ready", "type": "unavailable"}})
        try:
            self._complete(prompt, max_tokens, stream, seed)
        finally:
            with s.lock:
                s.active -= 1
                s.idle.notify_all()

    def _complete(self, prompt: str, max_tokens: int, stream: bool, seed: int) -> None:
        s = self.state
        rid, created = f"cmpl-{uuid.uuid4().hex[:16]}", int(time.time())
        words = s.model.generate(prompt, max_tokens, seed)
        if not stream:
            text = []
            for word in words:
                time.sleep(s.token_delay())
                text.append(word)
            return self._send(200, {"id": rid, "object": "text_completion", "created": created, "model": MODEL_NAME,
                                    "choices": [{"index": 0, "text": "".join(text), "finish_reason": "length"}],
                                    "usage": {"prompt_tokens": len(prompt.split()), "completion_tokens": len(text),
                                              "total_tokens": len(prompt.split()) + len(text)}})
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("X-Replica", s.name)
        self.end_headers()
        for word in words:
            time.sleep(s.token_delay())
            event = {"id": rid, "object": "text_completion", "created": created, "model": MODEL_NAME,
                     "choices": [{"index": 0, "text": word, "finish_reason": None}]}
            self._chunk(f"data: {json.dumps(event)}\n\n".encode())
        self._chunk(b"data: [DONE]\n\n")
        self._chunk(b"")

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):  # a client gone mid-stream is not an error here
        pass


def serve(port: int, *, host: str = "127.0.0.1", token_seconds: float = 0.04, batch_slowdown: float = 0.05,
          load_seconds: float = 1.0, stop_timeout: float = 30.0, name: str = "replica") -> int:
    state = ReplicaState(token_seconds, batch_slowdown, name)
    server = _Server((host, port), _Handler)
    server.state = state  # type: ignore[attr-defined]

    def on_term(_signum, _frame):  # a plain assignment: a lock or an Event here can deadlock the main thread
        state.stopping = True

    def wait(seconds: float) -> None:
        until = time.time() + seconds
        while not state.stopping and time.time() < until:
            time.sleep(0.02)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    started = time.time()
    from spotkit.rehearsal.serving.model import BigramModel

    state.model = BigramModel()
    wait(max(0.0, load_seconds - (time.time() - started)))  # the rest of the weights' load
    state.ready = not state.stopping
    print(json.dumps({"event": "ready", "replica": name, "t": time.time(), "load_seconds": time.time() - started}),
          file=sys.stderr, flush=True)
    wait(float("inf"))
    server.shutdown()  # no new connections; in-flight requests go on in their threads
    server.server_close()
    deadline = time.time() + stop_timeout
    with state.lock:
        while state.active and time.time() < deadline:
            state.idle.wait(timeout=max(0.0, deadline - time.time()))
        left = state.active
    print(json.dumps({"event": "stopped", "replica": name, "t": time.time(), "in_flight_cut": left}),
          file=sys.stderr, flush=True)
    return 0


def command(port: int, name: str, *, token_seconds: float, load_seconds: float,
            stop_timeout: Optional[float] = None) -> list[str]:
    """The argv that starts a replica process on ``port`` (what :func:`main` reads)."""
    argv = [sys.executable, "-m", "spotkit.rehearsal.serving.server", "--port", str(port), "--name", name,
            "--token-seconds", str(token_seconds), "--load-seconds", str(load_seconds)]
    return argv + (["--stop-timeout", str(stop_timeout)] if stop_timeout is not None else [])


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m spotkit.rehearsal.serving.server", description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--token-seconds", type=float, default=0.04)
    p.add_argument("--batch-slowdown", type=float, default=0.05)
    p.add_argument("--load-seconds", type=float, default=1.0)
    p.add_argument("--stop-timeout", type=float, default=30.0)
    p.add_argument("--name", default="replica")
    a = p.parse_args(argv)
    try:
        return serve(a.port, host=a.host, token_seconds=a.token_seconds, batch_slowdown=a.batch_slowdown,
                     load_seconds=a.load_seconds, stop_timeout=a.stop_timeout, name=a.name)
    except OSError as exc:
        print(f"error: replica {a.name} cannot listen on {a.host}:{a.port}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
