"""What every command receives: the global options, resolved once."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import click

from spotkit.aws import AwsTarget
from spotkit.config import read_config_file


@dataclass
class CliContext:
    region: str | None = None
    profile: str | None = None
    endpoint_url: str | None = None
    output: str = "text"
    debug: bool = False
    config_path: str | None = None
    _config: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def aws(self) -> AwsTarget:
        return AwsTarget(region=self.region, profile=self.profile, endpoint_url=self.endpoint_url)

    def client(self, service: str):
        return self.aws.client(service)

    @property
    def config(self) -> dict[str, Any]:
        """The parsed --config file (empty without one)."""
        if self._config is None:
            self._config = read_config_file(self.config_path) if self.config_path else {}
        return self._config

    @property
    def json(self) -> bool:
        return self.output == "json"


pass_ctx = click.make_pass_decorator(CliContext)
