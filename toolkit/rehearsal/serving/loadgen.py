"""An open-loop load generator: Poisson arrivals at a fixed rate, every request recorded.

Open loop: request ``k`` starts at its planned time whatever happened to the ones before (a closed
loop, which waits for answers, slows down when the service does and so hides failures). The plan is
seeded: the same seed gives the same arrival times, lengths (``max_tokens``) and streaming choices, so
every run of the drill gets the same load.

Each request is one line of JSON in ``--out``, written when it ends: ``i``, ``planned`` and ``start``
(epoch), ``first`` (first token: the first SSE event with text, or the whole body when not
streaming), ``end``, ``status``, ``bytes``, ``tokens``, ``stream``, ``max_tokens``, ``replica`` (the
``X-Replica`` header) and ``cause`` when it failed:

- ``refused`` / ``reset``: the connection to the balancer was refused or reset before an answer;
- ``5xx``: the balancer or the replica answered 500-599 (``status`` says which);
- ``stream-cut``: a 200 whose body ended early (no ``data: [DONE]``, a short JSON body, a connection
  closed mid-stream);
- ``timeout``: no answer within ``--timeout``; ``other``: anything else (its text in ``error``).

A request that cannot start on time (``max_in_flight`` requests already open) starts late; the
drill compares the achieved rate with the asked one and warns (``achieved_rate``).

    python -m spotkit.rehearsal.serving.loadgen --url http://127.0.0.1:8080 --rate 8 --duration 30 --out req.jsonl
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import sys
import threading
import time
from dataclasses import dataclass
from typing import Optional
from urllib.parse import urlsplit

import numpy as np


@dataclass(frozen=True)
class LoadSettings:
    """- ``rate``: requests per second (Poisson). ``duration``: seconds of arrivals. ``seed``: the plan's seed.
    - ``tokens``: ``max_tokens`` range (uniform, inclusive). ``stream_share``: share of streaming requests.
    - ``max_in_flight``: requests open at once at most (a connection limit); more start late.
    - ``timeout``: seconds a request may take.
    """

    rate: float = 8.0
    duration: float = 30.0
    seed: int = 7
    tokens: tuple[int, int] = (8, 32)
    stream_share: float = 0.7
    max_in_flight: int = 512
    timeout: float = 30.0

    def plan(self) -> list[dict]:
        """The requests: ``offset`` seconds from the start, ``max_tokens``, ``stream``, ``seed``."""
        rng = np.random.default_rng([self.seed, 27])
        out, t, i = [], 0.0, 0
        while True:
            t += float(rng.exponential(1.0 / self.rate))
            if t >= self.duration:
                return out
            tokens = int(rng.integers(self.tokens[0], self.tokens[1] + 1))
            out.append({"i": i, "offset": round(t, 4), "max_tokens": tokens,
                        "stream": bool(rng.random() < self.stream_share), "seed": int(rng.integers(1 << 30))})
            i += 1


PROMPTS = ("The list", "A class", "The import statement", "Exceptions", "The for loop")


def _read_stream(resp: http.client.HTTPResponse, rec: dict) -> None:
    """Read a streaming 200 into ``rec``: a token per SSE event, ``first`` at the first; cut without ``[DONE]``."""
    done, buf = False, b""
    while True:
        line = resp.readline()
        if not line:
            break
        rec["bytes"] += len(line)
        if line.startswith(b"data: "):
            if line.strip() == b"data: [DONE]":
                done = True
                break
            rec["tokens"] += 1
            if rec["first"] is None:
                rec["first"] = time.time()
        buf = line
    if done:
        resp.read()  # the closing chunk
    else:
        rec["cause"] = "stream-cut"
        rec["error"] = f"stream ended after {rec['tokens']} of {rec['max_tokens']} tokens ({buf[:40]!r})"


def _read_body(resp: http.client.HTTPResponse, rec: dict) -> None:
    """Read a whole (not streamed, or not 200) JSON body into ``rec``: its tokens from ``usage``."""
    data = resp.read()
    rec["bytes"] = len(data)
    rec["first"] = time.time()
    try:
        doc = json.loads(data)
        rec["tokens"] = int(doc.get("usage", {}).get("completion_tokens", 0))
    except ValueError:
        rec["cause"] = "stream-cut"
        rec["error"] = f"a body of {len(data)} bytes that is not JSON"
    if resp.status != 200 and rec["cause"] is None:
        rec["cause"] = "other"
        rec["error"] = f"status {resp.status}"


def one_request(host: str, port: int, item: dict, timeout: float) -> dict:
    """Send one completion request; the record (see the module doc)."""
    rec = {**item, "start": time.time(), "first": None, "end": None, "status": None, "bytes": 0, "tokens": 0,
           "replica": None, "cause": None}
    body = json.dumps({"model": "spotkit", "prompt": PROMPTS[item["i"] % len(PROMPTS)],
                       "max_tokens": item["max_tokens"], "stream": item["stream"], "seed": item["seed"]})
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("POST", "/v1/completions", body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        rec["status"], rec["replica"] = resp.status, resp.getheader("X-Replica")
        if resp.status >= 500:
            rec["bytes"] = len(resp.read())
            rec["cause"] = "5xx"
        elif item["stream"] and resp.status == 200:
            _read_stream(resp, rec)
        else:
            _read_body(resp, rec)
    except ConnectionRefusedError as exc:
        rec["cause"], rec["error"] = "refused", str(exc)
    except (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected) as exc:
        rec["cause"], rec["error"] = ("stream-cut" if rec["status"] else "reset"), f"{type(exc).__name__}: {exc}"
    except http.client.IncompleteRead as exc:
        rec["cause"], rec["error"] = "stream-cut", f"IncompleteRead: {len(exc.partial)} bytes"
    except (socket.timeout, TimeoutError) as exc:
        rec["cause"], rec["error"] = "timeout", str(exc)
    except (OSError, http.client.HTTPException) as exc:
        rec["cause"], rec["error"] = "other", f"{type(exc).__name__}: {exc}"
    finally:
        conn.close()
    rec["end"] = time.time()
    return rec


def run_load(url: str, settings: LoadSettings, start_at: float, out_path: str) -> dict:
    """Send the plan against ``url`` from ``start_at`` (epoch); records go to ``out_path`` as they end.

    Returns ``sent``, ``asked_rate``, ``achieved_rate`` and ``lag_p95`` (seconds a start came late)."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    plan = settings.plan()
    lock, slots = threading.Lock(), threading.BoundedSemaphore(settings.max_in_flight)
    threads, lags = [], []
    with open(out_path, "a") as out:
        def worker(item):
            try:
                rec = one_request(host, port, item, settings.timeout)
                with lock:
                    out.write(json.dumps(rec) + "\n")
                    out.flush()
            finally:
                slots.release()

        for item in plan:
            planned = start_at + item["offset"]
            delay = planned - time.time()
            if delay > 0:
                time.sleep(delay)
            slots.acquire()
            lags.append(max(0.0, time.time() - planned))
            thread = threading.Thread(target=worker, args=({**item, "planned": planned},), daemon=True)
            thread.start()
            threads.append(thread)
        last_start = time.time()
        for thread in threads:
            thread.join(timeout=settings.timeout + 5)
    span = max(settings.duration, last_start - start_at) if plan else settings.duration
    return {"sent": len(plan), "asked_rate": settings.rate, "achieved_rate": round(len(plan) / span, 3),
            "lag_p95": round(float(np.percentile(lags, 95)), 4) if lags else 0.0,
            "lag_max": round(max(lags), 4) if lags else 0.0}


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m spotkit.rehearsal.serving.loadgen", description=__doc__.splitlines()[0])
    p.add_argument("--url", required=True)
    p.add_argument("--rate", type=float, default=8.0)
    p.add_argument("--duration", type=float, default=30.0)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--tokens", type=int, nargs=2, default=(8, 32))
    p.add_argument("--stream-share", type=float, default=0.7)
    p.add_argument("--max-in-flight", type=int, default=512)
    p.add_argument("--timeout", type=float, default=30.0)
    p.add_argument("--start-at", type=float, help="epoch of the first arrival's origin (default: now)")
    p.add_argument("--out", required=True)
    p.add_argument("--summary", help="write the summary (sent, achieved rate, lag) here as JSON")
    a = p.parse_args(argv)
    settings = LoadSettings(rate=a.rate, duration=a.duration, seed=a.seed, tokens=tuple(a.tokens),
                            stream_share=a.stream_share, max_in_flight=a.max_in_flight, timeout=a.timeout)
    summary = run_load(a.url, settings, a.start_at or time.time(), a.out)
    text = json.dumps(summary)
    if a.summary:
        with open(a.summary, "w") as fh:
            fh.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
