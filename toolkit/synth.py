"""Synthesize stacks to Terraform JSON and summarize what a spot fleet will look like.

``synthesize`` runs the cdktn app in-process (no npm CLI needed) and writes
``OUTDIR/stacks/<name>/cdk.tf.json``; ``summarize`` reads such a file, whoever wrote it.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from toolkit.errors import MissingDependencyError, ToolkitError


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


def require_node() -> str:
    node = shutil.which("node")
    if not node:
        raise MissingDependencyError(
            "Node.js was not found on PATH; the cdktn engine (jsii) needs it to synthesize stacks",
            hint="install Node.js 20 or newer (e.g. 'apt-get install nodejs') and run the command again",
        )
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
    from stacks import registry
    from toolkit import synth_cache

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

    from modules.annotations import SpotkitWarning

    for message in messages:
        warnings.warn(message, SpotkitWarning, stacklevel=3)


def _synthesize_now(names: Sequence[str], outdir: Path,
                    config_data: Mapping[str, Any] | None) -> list[tuple[Path, list[str]]]:
    """Synthesize each stack in its own app (one engine import for all); return each cdk.tf.json with the
    warnings its constructs gave (the cache replays them on a hit)."""
    require_node()
    import os
    import warnings

    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    from modules.annotations import SpotkitWarning
    from stacks.app import build_app

    outdir.mkdir(parents=True, exist_ok=True)
    out = []
    for name in names:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", SpotkitWarning)
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
        if (subnet.get("tags") or {}).get("spotkit:tier") == "public":
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
