"""User data assembled from named parts.

Constructs add parts (EFS mount, the interruption agent, ECS settings...) after the launch template
exists; the script is produced at synthesis time, in ``order``, and handed to Terraform through a
``locals`` entry so that tokens (``${aws_efs_file_system.x.id}``) still resolve while bash's own
``${VAR}`` is escaped for Terraform.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cdktn import Fn, TerraformLocal
from constructs import Construct

from spotkit.constructs.lazy import lazy_string

HEADER = "#!/bin/bash\n# Assembled by spotkit: each part below is independent and logged to /var/log/spotkit-user-data.log\nset -uo pipefail\nexec > >(tee -a /var/log/spotkit-user-data.log) 2>&1\n"

_TOKEN_SAFE = re.compile(r"\$\{(?!TfToken\[)")


def escape_for_terraform(script: str) -> str:
    """Escape bash's ``${...}`` and ``%{...}`` so Terraform leaves them alone; keep cdktn tokens."""
    return _TOKEN_SAFE.sub("$${", script).replace("%{", "%%{")


@dataclass(frozen=True)
class UserDataPart:
    """One named piece of the boot script. Lower ``order`` runs first."""

    name: str
    script: str
    order: int = 50


class UserData:
    """An ordered set of named parts, rendered as one bash script."""

    def __init__(self, scope: Construct, id_: str):
        self._parts: dict[str, UserDataPart] = {}
        self._local = TerraformLocal(scope, id_, lazy_string(lambda: escape_for_terraform(self.render())))

    def add_part(self, part: UserDataPart) -> None:
        if part.name in self._parts:
            raise ValueError(f"user data already has a part named {part.name!r}")
        self._parts[part.name] = part

    @property
    def part_names(self) -> list[str]:
        return [p.name for p in self._ordered()]

    def _ordered(self) -> list[UserDataPart]:
        return sorted(self._parts.values(), key=lambda p: (p.order, p.name))

    def render(self) -> str:
        body = [HEADER]
        for part in self._ordered():
            body.append(f"\n# --- part: {part.name} ---\n{part.script.strip()}\n")
        return "".join(body)

    @property
    def base64(self) -> str:
        """The ``user_data`` value for a launch template: base64 of the rendered script."""
        return Fn.base64encode(self._local.as_string)
