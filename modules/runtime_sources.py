"""What ships from the runtime layer: one folder of ``spotkit.runtime`` with its contract, as archive entries.

The agent's zipapp ships ``runtime/agent/`` (``agent_artifact``); the handler's Lambda package ships
``runtime/interruption/`` (``interruption_events``). Each also carries the package markers
(``spotkit/__init__.py``, ``spotkit/runtime/__init__.py``) and ``spotkit/runtime/notice.py``, the one
contract both sides read. The folder decides what ships, not a list of files: a module added to
``runtime/agent/`` ships with the agent. Names are import names (``spotkit/runtime/...``) wherever the
sources are: ``toolkit/`` in a checkout, ``site-packages/spotkit/`` when installed from the wheel.
"""

from __future__ import annotations

from pathlib import Path

import spotkit

PACKAGE = "spotkit"
RUNTIME_FOLDERS = ("agent", "interruption")


def package_dir() -> Path:
    """Where the ``spotkit`` package's sources are (``toolkit/`` in a checkout)."""
    return Path(spotkit.__file__).resolve().parent


def runtime_sources(folder: str) -> list[tuple[str, Path]]:
    """(name in the archive, source file) of ``runtime/<folder>`` and its contract, sorted by name."""
    if folder not in RUNTIME_FOLDERS:
        raise ValueError(f"runtime folder must be one of {', '.join(RUNTIME_FOLDERS)} (got {folder!r})")
    top = package_dir()
    runtime = top / "runtime"
    files = [top / "__init__.py", runtime / "__init__.py", runtime / "notice.py"]
    files += [p for p in (runtime / folder).rglob("*.py") if p.is_file() and "__pycache__" not in p.parts]
    return sorted((f"{PACKAGE}/{f.relative_to(top).as_posix()}", f) for f in files)
