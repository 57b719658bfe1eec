"""``--cloud auto``: which cloud's metadata service answers at the metadata address.

Each cloud is probed the way it wants to be asked, with a short timeout, and must answer in its own
way (a header or body no other cloud sends):

- GCP: ``GET /computeMetadata/v1/instance/id`` with ``Metadata-Flavor: Google`` -> 200 and the response
  header ``Metadata-Flavor: Google``;
- Azure: ``GET /metadata/instance?api-version=2021-02-01`` with ``Metadata: true`` -> 200, a JSON
  object with ``compute``;
- AWS: ``PUT /latest/api/token`` with a TTL -> 200 and a token, or (IMDSv1-only) ``GET
  /latest/meta-data/instance-id`` -> 200.

All three live at 169.254.169.254 on their clouds, so the probes go to one URL. Standard library only.
"""

from __future__ import annotations

import json
from typing import Optional

from spotkit.runtime.agent.clouds.client import MetadataClient
from spotkit.runtime.agent.imds import TTL_HEADER, ImdsError

GCP_PROBE = "/computeMetadata/v1/instance/id"
AZURE_PROBE = "/metadata/instance?api-version=2021-02-01"


class CloudNotDetected(ImdsError):
    """No metadata service answered as any known cloud; the message lists what each probe got."""


def _probe_gcp(base_url: str, timeout: float) -> Optional[str]:
    resp = MetadataClient(base_url, {"Metadata-Flavor": "Google"}, timeout=timeout).get(GCP_PROBE)
    if resp.status == 200 and resp.headers.get("metadata-flavor", "").lower() == "google":
        return None
    return f"HTTP {resp.status}" + ("" if resp.status != 200 else " without the Metadata-Flavor: Google header")


def _probe_azure(base_url: str, timeout: float) -> Optional[str]:
    resp = MetadataClient(base_url, {"Metadata": "true"}, timeout=timeout).get(AZURE_PROBE)
    if resp.status == 200:
        try:
            doc = json.loads(resp.body)
        except ValueError:
            doc = None
        if isinstance(doc, dict) and isinstance(doc.get("compute"), dict):
            return None
        return "HTTP 200 without a compute object"
    return f"HTTP {resp.status}"


def _probe_aws(base_url: str, timeout: float) -> Optional[str]:
    client = MetadataClient(base_url, timeout=timeout)
    client.headers = {TTL_HEADER: "60"}
    resp = client.request("PUT", "/latest/api/token")
    if resp.status == 200 and resp.body.strip():
        return None
    client.headers = {}
    v1 = client.get("/latest/meta-data/instance-id")
    if v1.status == 200 and v1.body.strip():
        return None
    return f"token PUT HTTP {resp.status}, instance-id HTTP {v1.status}"


PROBES = (("gcp", _probe_gcp), ("azure", _probe_azure), ("aws", _probe_aws))


def detect_cloud(base_url: str, *, timeout: float = 0.5) -> str:
    """``aws``, ``gcp`` or ``azure``: the first whose probe is answered its way. Raises CloudNotDetected."""
    tried = []
    for cloud, probe in PROBES:
        try:
            problem = probe(base_url, timeout)
        except ImdsError as exc:
            problem = str(exc)
        if problem is None:
            return cloud
        tried.append(f"{cloud}: {problem}")
    raise CloudNotDetected(f"no metadata service at {base_url} answered as AWS, GCP or Azure ({'; '.join(tried)})")
