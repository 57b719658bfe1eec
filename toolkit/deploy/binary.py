"""Find the Terraform binary: ``--terraform-bin``, ``SPOTKIT_TERRAFORM_BIN``, else ``terraform`` then
``tofu`` on PATH. A missing or too-old binary is a ``MissingDependencyError`` saying what to install."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from dataclasses import dataclass

from spotkit.errors import MissingDependencyError

# `terraform version` answers in well under a second; one that does not within this many seconds (or
# SPOTKIT_TERRAFORM_TIMEOUT, when smaller) is not a working binary.
VERSION_TIMEOUT_SECONDS = 60.0

# The stacks need `required_version >= 1.5` (stacks/base.py); OpenTofu forked from 1.5/1.6.
MIN_VERSION = (1, 5, 0)
INSTALL_HINT = ("install Terraform >= 1.5 (https://developer.hashicorp.com/terraform/install, e.g. "
                "'apt-get install terraform' from the HashiCorp apt repository) or OpenTofu >= 1.6 "
                "('tofu', https://opentofu.org/docs/intro/install/), or pass --terraform-bin PATH")


@dataclass(frozen=True)
class TerraformBinary:
    path: str
    flavor: str  # "terraform" or "tofu"
    version: tuple[int, int, int]

    @property
    def version_text(self) -> str:
        return ".".join(str(v) for v in self.version)


def parse_version(text: str) -> tuple[str, tuple[int, int, int]] | None:
    """``Terraform v1.11.4`` / ``OpenTofu v1.8.0`` -> (flavor, (1, 11, 4))."""
    m = re.search(r"(Terraform|OpenTofu)\s+v(\d+)\.(\d+)\.(\d+)", text)
    if not m:
        return None
    flavor = "tofu" if m.group(1) == "OpenTofu" else "terraform"
    return flavor, (int(m.group(2)), int(m.group(3)), int(m.group(4)))


def find_terraform(explicit: str | None = None) -> TerraformBinary:
    """Return the binary to use, checked; raise ``MissingDependencyError`` with the install hint."""
    explicit = explicit or os.environ.get("SPOTKIT_TERRAFORM_BIN") or None
    if explicit:
        path = shutil.which(explicit) or (explicit if os.path.isfile(explicit) and os.access(explicit, os.X_OK) else None)
        if not path:
            raise MissingDependencyError(f"the Terraform binary {explicit!r} was not found or is not executable",
                                         hint=INSTALL_HINT)
        candidates = [path]
    else:
        candidates = [p for p in (shutil.which("terraform"), shutil.which("tofu")) if p]
        if not candidates:
            raise MissingDependencyError("neither 'terraform' nor 'tofu' was found on PATH", hint=INSTALL_HINT)
    path = candidates[0]
    output = _version_output(path, version_timeout())
    parsed = parse_version(output)
    if not parsed:
        raise MissingDependencyError(f"{path!r} did not report a Terraform or OpenTofu version", hint=INSTALL_HINT)
    flavor, version = parsed
    if version < MIN_VERSION:
        found = ".".join(map(str, version))
        raise MissingDependencyError(f"{path} is version {found}; spotkit needs 1.5.0 or newer", hint=INSTALL_HINT)
    return TerraformBinary(path=path, flavor=flavor, version=version)


def version_timeout() -> float:
    try:
        configured = float(os.environ.get("SPOTKIT_TERRAFORM_TIMEOUT") or VERSION_TIMEOUT_SECONDS)
    except ValueError:
        configured = VERSION_TIMEOUT_SECONDS
    return max(0.1, min(VERSION_TIMEOUT_SECONDS, configured))


def _version_output(path: str, timeout: float) -> str:
    """stdout+stderr of ``path version``; a binary that hangs is ended (with its children) and refused."""
    try:
        proc = subprocess.Popen([path, "version"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env={**os.environ, "CHECKPOINT_DISABLE": "1"}, start_new_session=True)
    except OSError as exc:
        raise MissingDependencyError(f"could not run {path!r}: {exc}", hint=INSTALL_HINT) from exc
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: ends what it started too
        except ProcessLookupError:
            pass
        proc.communicate()
        raise MissingDependencyError(
            f"{path!r} did not answer 'version' within {timeout:g} s: it hangs, so it cannot run plans either",
            hint=f"run '{path} version' to see what it waits for, or pass --terraform-bin with a working "
                 "terraform/tofu",
        ) from None
    return out or ""
