"""An IMDS client for the agent: IMDSv2 tokens cached and refreshed before they expire.

Only ``ImdsUnreachable`` (network trouble, 5xx) and ``ImdsError`` (a refusal the agent cannot fix by
retrying soon, such as IMDSv1 being disabled) leave this module; the agent logs both and keeps polling.
"""

from __future__ import annotations

import http.client
import time
from dataclasses import dataclass
from typing import Callable, Optional
from urllib.parse import urlsplit

TOKEN_PATH = "/latest/api/token"
TOKEN_HEADER = "X-aws-ec2-metadata-token"
TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
DEFAULT_METADATA_URL = "http://169.254.169.254"
MAX_TOKEN_TTL_SECONDS = 21600  # IMDSv2's longest token lifetime
MAX_BODY_BYTES = 1 << 20  # metadata answers are a few hundred bytes; a larger body is cut (and is unreadable)


class ImdsError(Exception):
    """IMDS answered, but not with what we need (e.g. token refused and IMDSv1 not allowed)."""


class ImdsUnreachable(ImdsError):
    """No answer: connection refused or dropped, timeout, or a 5xx. Retry on the next poll."""


@dataclass(frozen=True)
class Response:
    status: int
    body: str


class ImdsClient:
    """GET metadata paths with an IMDSv2 token.

    - ``token_ttl``: seconds asked for each token (1-21600). The token is refreshed when less than
      ``refresh_before`` seconds remain (default: a quarter of the TTL, at most 60 s), so a poll never
      carries an expired token; a 401 still drops the token and retries once with a fresh one.
    - ``allow_v1``: when the token PUT fails with 403/404/405 (IMDSv1-only endpoints, or a proxy that
      refuses PUT), send GETs without a token. Default off: IMDSv2 is what spotkit launch templates require.
    - ``timeout``: seconds per request. The link-local IMDS answers in about a millisecond.
    """

    def __init__(self, base_url: str = DEFAULT_METADATA_URL, *, token_ttl: int = MAX_TOKEN_TTL_SECONDS,
                 allow_v1: bool = False,
                 timeout: float = 1.0, refresh_before: Optional[float] = None,
                 clock: Callable[[], float] = time.monotonic):
        if not 1 <= token_ttl <= MAX_TOKEN_TTL_SECONDS:
            raise ValueError(f"token_ttl must be between 1 and {MAX_TOKEN_TTL_SECONDS} seconds (got {token_ttl})")
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"metadata URL must look like http://HOST[:PORT] (got {base_url!r})")
        self.base_url = base_url.rstrip("/")
        self._host, self._port = parts.hostname, parts.port or 80
        self.token_ttl = token_ttl
        self.allow_v1 = allow_v1
        self.timeout = timeout
        self.refresh_before = refresh_before if refresh_before is not None else min(60.0, token_ttl / 4)
        self._clock = clock
        self._token: Optional[str] = None
        self._token_expires = 0.0
        self._v1 = False
        self._conn: Optional[http.client.HTTPConnection] = None
        self.token_fetches = 0

    # --- transport ---------------------------------------------------------------------------

    def _request(self, method: str, path: str, headers: dict) -> Response:
        for attempt in (1, 2):  # a kept-alive connection the server closed fails once: reconnect and retry
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)
            try:
                self._conn.request(method, path, headers=headers)
                resp = self._conn.getresponse()
                raw = resp.read(MAX_BODY_BYTES + 1)
                body = raw[:MAX_BODY_BYTES].decode("utf-8", "replace")
                if resp.will_close or len(raw) > MAX_BODY_BYTES:  # unread rest: the connection cannot be reused
                    self.close()
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                fresh = isinstance(exc, (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError))
                if attempt == 1 and fresh and method == "GET":
                    continue
                raise ImdsUnreachable(f"{method} {self.base_url}{path}: {type(exc).__name__}: {exc}") from exc
            if resp.status >= 500:
                raise ImdsUnreachable(f"{method} {self.base_url}{path}: HTTP {resp.status}")
            return Response(resp.status, body)
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # --- tokens ------------------------------------------------------------------------------

    def _fresh_token(self) -> Optional[str]:
        """A token valid for at least ``refresh_before`` more seconds; None when falling back to IMDSv1."""
        if self._v1:
            return None
        now = self._clock()
        if self._token and now < self._token_expires - self.refresh_before:
            return self._token
        resp = self._request("PUT", TOKEN_PATH, {TTL_HEADER: str(self.token_ttl)})
        if resp.status == 200 and resp.body:
            self._token, self._token_expires = resp.body.strip(), now + self.token_ttl
            self.token_fetches += 1
            return self._token
        if resp.status in (403, 404, 405) and self.allow_v1:
            self._v1 = True
            return None
        raise ImdsError(f"the IMDSv2 token request was refused (HTTP {resp.status}); "
                        "allow IMDSv1 only if this endpoint cannot issue tokens")

    def get(self, path: str) -> Response:
        """GET a metadata path; 200 and 404 come back as a Response, trouble raises."""
        for attempt in (1, 2):
            token = self._fresh_token()
            resp = self._request("GET", path, {TOKEN_HEADER: token} if token else {})
            if resp.status == 401 and attempt == 1:
                self._token = None  # expired early or the service restarted: fetch a new one and retry
                continue
            if resp.status == 401:
                raise ImdsError(f"GET {path}: HTTP 401 with a fresh token")
            return resp
        raise AssertionError("unreachable")

    def get_text(self, path: str) -> Optional[str]:
        """The body of a 200, None for a 404; other statuses raise ImdsError."""
        resp = self.get(path)
        if resp.status == 404:
            return None
        if resp.status != 200:
            raise ImdsError(f"GET {path}: HTTP {resp.status}")
        return resp.body
