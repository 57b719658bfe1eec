"""boto3 sessions and clients built from the global CLI options.

Domain functions never build clients themselves: they receive them, so tests pass clients that
point at the embedded emulator (moto server) over HTTP.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import boto3
from botocore.config import Config

from toolkit.errors import AwsCallError

# Standard retry mode backs off on throttling (RequestLimitExceeded, Throttling...).
RETRY_CONFIG = Config(retries={"max_attempts": 8, "mode": "standard"}, connect_timeout=10, read_timeout=60)


@dataclass(frozen=True)
class AwsTarget:
    region: str | None = None
    profile: str | None = None
    endpoint_url: str | None = None

    def session(self) -> boto3.session.Session:
        try:
            return boto3.session.Session(profile_name=self.profile, region_name=self.resolved_region())
        except Exception as exc:  # botocore.exceptions.ProfileNotFound and friends
            raise AwsCallError(
                f"could not open the AWS profile {self.profile!r}: {exc}",
                hint="check ~/.aws/config, or pass --profile with an existing profile",
            ) from exc

    def resolved_region(self) -> str:
        return self.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"

    def client(self, service: str, config: Config | None = None):
        """A client with the standard retries; ``config`` is merged over them (fewer attempts, a pool sized to
        worker threads)."""
        session = self.session()
        extra = {}
        if self.endpoint_url and is_loopback(self.endpoint_url) and session.get_credentials() is None:
            # The local emulator (spotkit local) accepts any key: spare users exporting fake ones.
            # Only for loopback endpoints, and only when no real credentials are configured.
            extra = dict(EMULATOR_CREDENTIALS)
        return session.client(service, endpoint_url=self.endpoint_url,
                              config=RETRY_CONFIG.merge(config) if config is not None else RETRY_CONFIG, **extra)


EMULATOR_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def is_loopback(url: str) -> bool:
    import ipaddress
    from urllib.parse import urlparse

    host = urlparse(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
