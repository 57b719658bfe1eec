"""The provider mirror setting, for air-gapped machines.

Where the value comes from, first hit wins: ``--provider-mirror DIR``, ``SPOTKIT_PROVIDER_MIRROR``,
``settings.provider_mirror`` in the ``--config`` file, else ``auto`` (``DEFAULT``). The value is a
directory that holds ``registry.terraform.io/<namespace>/<type>/...`` (unpacked or packed layout), or
``auto``: the first of ``WELL_KNOWN_MIRRORS`` that holds a provider (none found: Terraform downloads),
or ``none``/empty: no mirror (Terraform downloads).

``auto`` is the default so that a command pasted into a plain shell (no environment variable) installs
providers the way ``make demo`` did on a machine without registry access.

With a mirror, spotkit writes a Terraform CLI config (``TF_CLI_CONFIG_FILE`` for its runs only) that
installs registry.terraform.io providers from the mirror and nothing from the network.
"""

from __future__ import annotations

import os
from pathlib import Path

from spotkit.errors import ConfigError

ENV_VAR = "SPOTKIT_PROVIDER_MIRROR"
DEFAULT = "auto"
WELL_KNOWN_MIRRORS = ("/opt/tf-plugins", "~/.terraform.d/plugins", "/usr/share/terraform/plugins",
                      "~/.local/share/terraform/plugins")
REGISTRY_HOST = "registry.terraform.io"


def holds_providers(path: str | Path) -> bool:
    p = Path(path).expanduser() / REGISTRY_HOST
    return p.is_dir() and any(p.glob("*/*"))


def discover() -> Path | None:
    for candidate in WELL_KNOWN_MIRRORS:
        if holds_providers(candidate):
            return Path(candidate).expanduser()
    return None


def resolve(option: str | None = None, settings_value: str | None = None) -> Path | None:
    """The mirror directory to use, or None; a named directory that holds no provider is an error."""
    value = option if option is not None else os.environ.get(ENV_VAR, settings_value)
    if value is None:
        value = DEFAULT
    if str(value).strip().lower() in ("", "none", "off"):
        return None
    value = str(value).strip()
    if value.lower() == "auto":
        return discover()
    path = Path(value).expanduser()
    if not holds_providers(path):
        raise ConfigError(
            f"provider mirror {value!r} holds no providers (expected {value}/{REGISTRY_HOST}/hashicorp/aws/...)",
            hint=f"pass the folder that contains '{REGISTRY_HOST}' (e.g. /opt/tf-plugins), or 'auto' to search "
                 f"{', '.join(WELL_KNOWN_MIRRORS)}",
        )
    return path.resolve()


def render_cli_config(mirror: Path | None, plugin_cache: Path | None = None) -> str:
    """A Terraform CLI config (HCL) using the mirror for registry.terraform.io providers."""
    lines = []
    if plugin_cache is not None:
        lines.append(f'plugin_cache_dir = "{plugin_cache}"')
    if mirror is not None:
        lines += [
            "provider_installation {",
            "  filesystem_mirror {",
            f'    path    = "{mirror}"',
            f'    include = ["{REGISTRY_HOST}/*/*"]',
            "  }",
            "  direct {",
            f'    exclude = ["{REGISTRY_HOST}/*/*"]',
            "  }",
            "}",
        ]
    return "\n".join(lines) + "\n"
