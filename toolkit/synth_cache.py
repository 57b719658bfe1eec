"""A content-addressed cache of synthesized stacks, so an unchanged stack is not synthesized again.

Synthesis costs seconds (importing the engine, running jsii's Node.js); most plans in CI change nothing
that synthesis reads. The key of a stack is a sha256 over everything that determines its output:

- the stack's name and spotkit's version;
- the installed versions of the engine and its bindings (cdktn, cdktn-aws, constructs, jsii);
- the whole ``--config`` data (every section: a stack may read settings as well as its own section);
- every source file of ``stacks/``, ``modules/`` and ``toolkit/`` (what the stacks import, and what they
  package as assets: the agent artifact, the handler's Lambda), path and bytes.

An entry is ``<cache>/<key>/`` holding the stack's output folder (``cdk.tf.json`` and its ``assets/``)
plus ``entry.json`` with the sha256 of each file; an entry whose files do not match is ignored and
rebuilt, never used. The cache is safe to delete at any time. Its folder is ``SPOTKIT_SYNTH_CACHE``
(``off`` disables it), else ``<project dir>/synth-cache`` (``./.spotkit/synth-cache``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Mapping

CACHE_ENV = "SPOTKIT_SYNTH_CACHE"
ENGINE_DISTRIBUTIONS = ("cdktn", "cdktn-aws", "constructs", "jsii")
ENTRY_FILE = "entry.json"


def cache_dir(project: Path | None = None) -> Path | None:
    """The cache folder, or None when ``SPOTKIT_SYNTH_CACHE=off``."""
    value = os.environ.get(CACHE_ENV, "").strip()
    if value.lower() in ("off", "0", "false", "no", "none"):
        return None
    if value:
        return Path(value).expanduser().resolve()
    if project is None:
        from spotkit.rehearsal.local.emulator import project_dir

        project = project_dir(None)
    return Path(project) / "synth-cache"


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "absent"


def source_dirs() -> tuple[Path, ...]:
    """The folders synthesis reads from: the spotkit package, its constructs and its stacks (in a checkout
    ``toolkit/``, ``modules/``, ``stacks/``; installed, the last two are inside the first)."""
    import spotkit
    import spotkit.constructs
    import spotkit.stacks

    return tuple(Path(m.__file__).resolve().parent for m in (spotkit, spotkit.constructs, spotkit.stacks))


def _source_files(dirs: Iterable[Path]) -> Iterable[tuple[str, Path]]:
    seen: set[Path] = set()
    for base in dirs:
        for path in sorted(base.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc", ".pyo") \
                    and path not in seen:
                seen.add(path)
                yield f"{base.name}/{path.relative_to(base).as_posix()}", path


_SOURCE_DIGEST: str | None = None


def source_digest(dirs: Iterable[Path] | None = None) -> str:
    """sha256 over the name and bytes of every source file that synthesis can read (``source_dirs``; once
    per process)."""
    global _SOURCE_DIGEST
    if dirs is None and _SOURCE_DIGEST is not None:
        return _SOURCE_DIGEST
    digest = hashlib.sha256()
    for name, path in _source_files(source_dirs() if dirs is None else dirs):
        digest.update(name.encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    value = digest.hexdigest()
    if dirs is None:
        _SOURCE_DIGEST = value
    return value


def stack_key(stack: str, config_data: Mapping[str, Any] | None) -> str:
    from spotkit import __version__

    parts = {
        "stack": stack,
        "spotkit": __version__,
        "engine": {d: _version(d) for d in ENGINE_DISTRIBUTIONS},
        "config": config_data or {},
        "source": source_digest(),
    }
    blob = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


def _file_hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@dataclass
class SynthCache:
    folder: Path

    def _entry(self, key: str) -> Path:
        return self.folder / key

    def lookup(self, key: str) -> Path | None:
        """The cached stack folder for ``key`` when it is whole (every file matches its recorded hash)."""
        entry = self._entry(key)
        manifest = entry / ENTRY_FILE
        stack_dir = entry / "stack"
        try:
            recorded = json.loads(manifest.read_text())["files"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        try:
            if _file_hashes(stack_dir) != recorded or "cdk.tf.json" not in recorded:
                return None
        except OSError:
            return None
        return stack_dir

    def warnings(self, key: str) -> list[str]:
        """The construct warnings recorded when the entry was synthesized (replayed on a hit)."""
        try:
            return list(json.loads((self._entry(key) / ENTRY_FILE).read_text()).get("warnings") or [])
        except (OSError, ValueError, AttributeError):
            return []

    def store(self, key: str, stack_dir: Path, warnings: list[str] | None = None) -> None:
        """Copy a freshly synthesized stack folder in, atomically (a rename of a complete folder)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=self.folder))
        try:
            shutil.copytree(stack_dir, staging / "stack")
            (staging / ENTRY_FILE).write_text(json.dumps({"files": _file_hashes(staging / "stack"),
                                                                 "warnings": list(warnings or [])}, indent=1))
            target = self._entry(key)
            if target.exists():
                if self.lookup(key) is not None:  # another process stored the same entry meanwhile: keep it
                    shutil.rmtree(staging, ignore_errors=True)
                    return
                trash = Path(tempfile.mkdtemp(prefix=".damaged-", dir=self.folder))
                os.replace(target, trash / "entry")  # one rename: a reader never sees half an entry
                shutil.rmtree(trash, ignore_errors=True)
            os.replace(staging, target)
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)  # a cache that cannot be written is only slower

    def restore(self, cached: Path, outdir: Path, stack: str) -> Path:
        """Put a cached stack folder where synthesis would have written it; return its cdk.tf.json."""
        dest = outdir / "stacks" / stack
        if dest.exists():
            shutil.rmtree(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(cached, dest)
        return dest / "cdk.tf.json"
