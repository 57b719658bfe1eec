"""A plain HTTP client for GCP's and Azure's metadata services: one fixed header on every request.

Neither cloud uses tokens: GCP wants ``Metadata-Flavor: Google``, Azure ``Metadata: true`` (both refuse a
request without it, and one carrying ``X-Forwarded-For``). Errors leave as the agent's own ``ImdsError``
(a refusal) and ``ImdsUnreachable`` (no answer, a timeout, a 5xx), so the agent logs them and keeps
polling exactly as it does on AWS. Standard library only, Python 3.9.
"""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional, Tuple
from urllib.parse import urlsplit

from spotkit.runtime.agent.imds import DEFAULT_METADATA_URL, ImdsError, ImdsUnreachable
from spotkit.runtime.agent.notices import Notice

# Where ``Notice`` has a ``key`` (toolkit.notice ids: ``notice_id(kind, instance, key)``), the cloud monitors
# give one; where it has not, the id comes from kind, time and ``detail["EventId"]``.
_NOTICE_HAS_KEY = "key" in getattr(Notice, "__dataclass_fields__", {})


def make_notice(kind: str, when, action: str, source: str, detail: dict, key: str) -> Notice:
    """A ``Notice`` with ``key`` (what stays stable for this notice and changes for the next one)."""
    if _NOTICE_HAS_KEY:
        return Notice(kind, when, action, source, detail, key=key)
    return Notice(kind, when, action, source, detail)


@dataclass(frozen=True)
class HttpResponse:
    status: int
    body: str
    headers: Mapping[str, str] = field(default_factory=dict)


def ok_body(resp: HttpResponse, path: str) -> str:
    """The body of a 200 answer to ``GET path``; any other status raises ImdsError naming it."""
    if resp.status != 200:
        raise ImdsError(f"GET {path}: HTTP {resp.status}: {resp.body[:200]}")
    return resp.body


class MetadataClient:
    """GET and POST ``base_url`` paths with ``headers`` (the cloud's metadata header) on each request.

    ``timeout`` is the per-request socket timeout; a hanging GET passes its own, longer one. One short
    connection per request: the metadata service is link-local and a hanging GET must not share a
    kept-alive socket with the next poll.
    """

    def __init__(self, base_url: str = DEFAULT_METADATA_URL, headers: Optional[Mapping[str, str]] = None, *,
                 timeout: float = 1.0):
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"metadata URL must look like http://HOST[:PORT] (got {base_url!r})")
        self.base_url = base_url.rstrip("/")
        self._host, self._port = parts.hostname, parts.port or 80
        self.headers = dict(headers or {})
        self.timeout = timeout
        self.requests = 0

    def request(self, method: str, path: str, body: Optional[dict] = None,
                timeout: Optional[float] = None) -> HttpResponse:
        headers = dict(self.headers)
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        conn = http.client.HTTPConnection(self._host, self._port, timeout=timeout or self.timeout)
        self.requests += 1
        try:
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            text = resp.read().decode("utf-8", "replace")
            got = {k.lower(): v for k, v in resp.getheaders()}
        except (OSError, http.client.HTTPException) as exc:
            raise ImdsUnreachable(f"{method} {self.base_url}{path}: {type(exc).__name__}: {exc}") from exc
        finally:
            conn.close()
        if resp.status >= 500:
            raise ImdsUnreachable(f"{method} {self.base_url}{path}: HTTP {resp.status}")
        return HttpResponse(resp.status, text, got)

    def get(self, path: str, timeout: Optional[float] = None) -> HttpResponse:
        return self.request("GET", path, timeout=timeout)

    def get_text(self, path: str) -> Optional[str]:
        """The body of a 200, None for a 404; other statuses raise ImdsError (as ``ImdsClient.get_text``)."""
        resp = self.get(path)
        if resp.status == 404:
            return None
        return ok_body(resp, path)

    def close(self) -> None:
        """Nothing kept open (the agent closes its client when it stops)."""


AWS_PREFIX = "/latest/"


class InstanceIdentity:
    """This machine's identity from its own metadata service: ``id`` (what notice ids carry: GCP's numeric
    instance id, Azure's ``vmId``) and ``name`` (what platform events call it: Azure's ``Resources`` hold
    VM names, ``compute.name``).

    ``read`` returns ``(id, name)`` or raises ImdsError. A read that succeeds is kept for the agent's
    life; one that fails raises again on the next ``get()`` (retried, never pinned to a guess: an agent
    that cannot tell its own name cannot tell which events are its own).
    """

    def __init__(self, read: Callable[[], Tuple[str, str]]):
        self._read = read
        self._value: Optional[Tuple[str, str]] = None

    def get(self) -> Tuple[str, str]:
        if self._value is None:
            ident, name = self._read()
            if not ident or not name:
                raise ImdsError(f"the metadata service gave an empty id or name (id {ident!r}, name {name!r})")
            self._value = (ident, name)
        return self._value

    @property
    def id(self) -> str:
        return self.get()[0]

    @property
    def name(self) -> str:
        return self.get()[1]


class CloudMetadata:
    """What the agent reads through on GCP and Azure: a GET of a monitor's ``path`` is that monitor's own
    ``fetch()`` (GCP's hanging GET, Azure's document); any other path is a plain GET with the header.

    So the agent's poll loop is the same on every cloud: ``get_text(monitor.path)``, then
    ``monitor.parse(body, now)``.
    """

    def __init__(self, client: MetadataClient, monitors: list, identity: Optional[InstanceIdentity] = None):
        self.client = client
        self.base_url = client.base_url
        self._by_path = {m.path: m for m in monitors}
        self.identity = identity  # the agent reads this machine's id for notice ids here

    def get_text(self, path: str) -> Optional[str]:
        monitor = self._by_path.get(path)
        if monitor is not None:
            return monitor.fetch()
        if path.startswith(AWS_PREFIX):  # an AWS path the agent asks for (instance id, lifecycle state...):
            return None                  # not on this cloud, as a 404 would say, without asking the service
        return self.client.get_text(path)

    def get(self, path: str, timeout: Optional[float] = None) -> HttpResponse:
        return self.client.get(path, timeout)

    def request(self, method: str, path: str, body: Optional[dict] = None,
                timeout: Optional[float] = None) -> HttpResponse:
        return self.client.request(method, path, body, timeout)

    def close(self) -> None:
        self.client.close()
