"""The handler's package: ``runtime/interruption/`` with its contract, staged at synthesis for
``TerraformAsset`` to zip (no zip in the repository; boto3 is in the Lambda runtime)."""

from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Optional, Sequence

from constructs import Construct

from spotkit.constructs.runtime_sources import runtime_sources

CODE_ID = "handler-code"


def handler_code(scope: Construct):
    """The package as a ``TerraformAsset`` with id ``handler-code`` in ``scope``: the ``InterruptionEvents``
    construct itself, not its handler, because the asset's folder in the synthesized output is named by its
    construct path and the deployed function's ``filename`` names that folder (moving the asset would change
    every deployed function)."""
    from cdktn import AssetType, TerraformAsset

    return TerraformAsset(scope, CODE_ID, path=str(build_lambda_source()), type=AssetType.ARCHIVE)


def lambda_source_files() -> list[tuple[str, Path]]:
    """What the handler's package holds (name in the package, source): ``runtime/interruption/`` with its
    contract (``runtime_sources``)."""
    return runtime_sources("interruption")


def _tree_digest(files: Sequence[tuple[str, Path]]) -> str:
    """sha256 over the files' names and bytes, in the order of their names (the sources' listing and a
    cached folder's walk list them in different orders: the digest must not depend on it)."""
    digest = hashlib.sha256()
    for name, f in sorted(files):
        digest.update(name.encode() + b"\0" + f.read_bytes() + b"\0")
    return digest.hexdigest()


def _cached_tree_digest(folder: Path) -> Optional[str]:
    """The digest of what ``folder`` holds now (every file, sorted), or None when it holds anything but
    regular files and folders (a symlink could point a later build anywhere)."""
    entries = sorted(folder.rglob("*"))
    if any(p.is_symlink() or not (p.is_file() or p.is_dir()) for p in entries):
        return None
    return _tree_digest([(p.relative_to(folder).as_posix(), p) for p in entries if p.is_file()])


def lambda_cache_root() -> Optional[Path]:
    """The private cache of staged packages: ``$SPOTKIT_CACHE_DIR`` or ``$XDG_CACHE_HOME/spotkit`` (default
    ``~/.cache/spotkit``), folder ``lambda``, mode 0700 and owned by us; None when that cannot be had
    (then every build stages into a fresh private temporary folder)."""
    base = os.environ.get("SPOTKIT_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "spotkit")
    root = Path(base) / "lambda"
    try:
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = root.lstat()
        if root.is_symlink() or not root.is_dir() or st.st_uid != os.getuid():
            return None
        if st.st_mode & 0o077:
            os.chmod(root, 0o700)
        return root
    except OSError:
        return None


def build_lambda_source(cache_root: Optional[Path] = None) -> Path:
    """Stage the handler's code (``lambda_source_files``) for ``TerraformAsset``
    to zip at synthesis; boto3 is in the runtime.

    Staged in a private folder (0700, ``tempfile.mkdtemp``) and kept in a content-addressed cache folder
    named by the SHA-256 of the sources (``lambda_cache_root``, 0700, ours). A cached package is reused only
    when the digest of what it holds now equals its name. Never a predictable shared temporary path.

    Shared by every checkout and process of the user, so safe under concurrency: an entry appears in one
    rename of a complete folder and is never moved or deleted by a build, because another synthesis may
    be zipping it at that moment (cdktn zips the folder later, at ``app.synth()``). An entry that does not
    verify (edited, linked, or written into) is left alone; this build stages its own private copy
    instead, removed when the process exits."""
    files = lambda_source_files()
    digest = _tree_digest(files)
    cache = cache_root if cache_root is not None else lambda_cache_root()
    target = cache / digest if cache is not None else None
    if target is not None and target.is_dir() and not target.is_symlink() and _cached_tree_digest(target) == digest:
        return target
    staging = Path(tempfile.mkdtemp(prefix="spotkit-lambda-", dir=cache))  # 0700
    for name, f in files:
        dest = staging / name
        dest.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        shutil.copyfile(f, dest)
    if target is not None and not os.path.lexists(target):
        try:
            os.rename(staging, target)  # fails when another build published first: then use theirs if sound
            return target
        except OSError:
            if target.is_dir() and not target.is_symlink() and _cached_tree_digest(target) == digest:
                shutil.rmtree(staging, ignore_errors=True)
                return target
    _PRIVATE_STAGINGS.append(staging)
    return staging


_PRIVATE_STAGINGS: list[Path] = []


@atexit.register
def _remove_private_stagings() -> None:
    for path in _PRIVATE_STAGINGS:
        shutil.rmtree(path, ignore_errors=True)
