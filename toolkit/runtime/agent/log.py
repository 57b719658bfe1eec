"""JSON-lines logging for the agent: one object per line, ``ts`` and ``event`` first, flushed at once."""

from __future__ import annotations

import json
import sys
import threading
from datetime import datetime, timezone
from typing import IO, Optional


class JsonLogger:
    """Writes ``{"ts": ..., "event": ..., ...}`` lines to ``stream`` (default stdout; journald under systemd).

    ``events`` keeps the last ``keep`` entries in memory, so a library caller (the drill) can read them.
    """

    def __init__(self, stream: Optional[IO[str]] = None, keep: int = 1000):
        self.stream = stream if stream is not None else sys.stdout
        self.events: list[dict] = []
        self._keep = keep
        self._lock = threading.Lock()

    def __call__(self, event: str, **fields) -> dict:
        entry = {"ts": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "event": event, **fields}
        line = json.dumps(entry, default=str, sort_keys=False)
        with self._lock:
            self.events.append(entry)
            del self.events[:-self._keep]
            self.stream.write(line + "\n")
            self.stream.flush()
        return entry
