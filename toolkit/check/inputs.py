"""Reading one input file within its size cap, as UTF-8 text: a huge, binary or non-UTF-8 file is a user
error naming the file, never a traceback or gigabytes of parse tree."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from spotkit.errors import ToolkitError

MAX_HCL_MB_ENV = "SPOTKIT_CHECK_MAX_HCL_MB"
MAX_HCL_MB = 2  # .tf / .tfvars files: parsing HCL takes about 300 bytes of memory per byte of input (measured)
MAX_JSON_MB = 512  # Terraform JSON and plan JSON: about 10 bytes of memory per byte
MEMORY_PER_HCL_BYTE = 300


def max_hcl_mb() -> float:
    raw = os.environ.get(MAX_HCL_MB_ENV, "").strip()
    if not raw:
        return MAX_HCL_MB
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise ToolkitError(f"{MAX_HCL_MB_ENV}={raw!r} is not a positive number of megabytes",
                           hint=f"unset {MAX_HCL_MB_ENV} (default {MAX_HCL_MB} MB), or set it to a number such as 16")
    return value


def _shown(path: Path) -> Path:
    """``path`` as the user would type it: relative to the working directory when below it."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve())
    except (ValueError, OSError):
        return path


def read_input(path: Path, hcl: bool) -> str:
    """The text of one input file, read only when it is within the size cap and is UTF-8 text: a huge
    file, a binary or a non-UTF-8 file is a user error naming the file (never a traceback, never
    gigabytes of parse tree). ``hcl``: the file is parsed with the HCL grammar (.tf, .tfvars)."""
    cap_mb = max_hcl_mb() if hcl else MAX_JSON_MB
    size = path.stat().st_size
    path = _shown(path)
    if size > cap_mb * 1024 * 1024:
        mb = size / (1024 * 1024)
        if hcl:
            need_gb = size * MEMORY_PER_HCL_BYTE / 1024 ** 3
            raise ToolkitError(
                f"{path} is {mb:.1f} MB, over the {cap_mb:g} MB spotkit check parses from one HCL file "
                f"(parsing it would take about {need_gb:.1f} GB of memory); check a plan instead "
                "('terraform show -json PLANFILE > plan.json', then 'spotkit check plan.json'), or raise the cap",
                hint=f"{MAX_HCL_MB_ENV}={int(mb) + 1} spotkit check {shlex.quote(str(path.parent))}")
        raise ToolkitError(f"{path} is {mb:.0f} MB, over the {cap_mb} MB spotkit check reads from one JSON file",
                           hint="check the directory of .tf files it was made from instead: spotkit check DIR")
    data = path.read_bytes()
    if b"\x00" in data[:8192]:
        raise ToolkitError(f"{path} is a binary file, not Terraform text: move it out of the directory (Terraform would refuse it too)",
                           hint=f"file {shlex.quote(str(path))}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ToolkitError(f"{path} is not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line}): Terraform reads UTF-8 only; "
                           "convert it (iconv) or move it out of the directory",
                           hint=f"file -i {shlex.quote(str(path))}") from None
