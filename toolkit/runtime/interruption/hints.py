"""``next:`` hints of the handler's errors: one command, with the real queue, table, region and endpoint,
that pastes into the user's own shell (what to do after it follows as a shell comment).

Standard library only (it runs in the Lambda too): the command is the AWS CLI's, pointed where the
client that failed points."""

from __future__ import annotations

import shlex
from urllib.parse import urlparse


def aws_cli(client, *args: str, note: str = "") -> str:
    """``aws <args>`` against the region and endpoint ``client`` uses (``--endpoint-url`` only for an endpoint
    other than AWS's own), shell-quoted; ``note`` follows as a shell comment."""
    meta = getattr(client, "meta", None)  # (a stand-in client may have none: the command then names neither)
    region, endpoint = getattr(meta, "region_name", None), getattr(meta, "endpoint_url", None) or ""
    words = ["aws", *args, *(["--region", region] if region else [])]
    if endpoint and not (urlparse(endpoint).hostname or "").endswith(".amazonaws.com"):
        words += ["--endpoint-url", endpoint]
    return shlex.join(words) + (f"   # {note}" if note else "")
