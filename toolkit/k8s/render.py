"""Write the Kubernetes manifests a stack needs as YAML files, one per object, in apply order.

Stacks that have manifests are listed in ``K8S_STACKS`` (stack name -> config module, config class,
builder). The builder validates the config and the rendered Job before anything is written.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

import yaml

from spotkit.stacks import registry
from spotkit.config import apply_overrides, section
from spotkit.errors import ToolkitError

# stack name -> (module, config class, builder function)
K8S_STACKS: dict[str, tuple[str, str, str]] = {
    "eks_gpu": ("spotkit.stacks.eks_gpu_config", "EksGpuConfig", "build_manifests"),
}


class _NoAliasDumper(yaml.SafeDumper):
    """Plain YAML for kubectl and humans: repeated lists are written out, never as &anchors."""

    def ignore_aliases(self, data):  # noqa: ARG002 - yaml interface
        return True


def _str_representer(dumper: yaml.SafeDumper, value: str):
    # Scripts (the resume entrypoint) read better as literal blocks.
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_NoAliasDumper.add_representer(str, _str_representer)


def to_yaml(manifest: Mapping) -> str:
    return yaml.dump(dict(manifest), Dumper=_NoAliasDumper, sort_keys=False, default_flow_style=False)


@dataclass
class RenderResult:
    stack: str
    outdir: str
    files: list[str] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def build(stack: str, config_data: Mapping[str, Any] | None = None,
          file_system_id: Optional[str] = None, access_point_id: Optional[str] = None) -> tuple[Any, dict[str, dict]]:
    """Return (stack config, name -> manifest) for ``stack``."""
    registry.get(stack)  # unknown names: the usual message
    if stack not in K8S_STACKS:
        raise ToolkitError(f"stack {stack!r} has no Kubernetes manifests",
                           hint=f"stacks with manifests: {', '.join(sorted(K8S_STACKS))}")
    module_name, config_class, builder = K8S_STACKS[stack]
    module = importlib.import_module(module_name)
    config = apply_overrides(getattr(module, config_class)(), section(dict(config_data or {}), stack), prefix=stack)
    return config, getattr(module, builder)(config, file_system_id=file_system_id, access_point_id=access_point_id)


def render(stack: str, outdir: str | Path, config_data: Mapping[str, Any] | None = None,
           file_system_id: Optional[str] = None, access_point_id: Optional[str] = None) -> RenderResult:
    """Validate and write ``OUTDIR/NN-<name>.yaml`` per manifest; return what was written."""
    config, manifests = build(stack, config_data, file_system_id, access_point_id)
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    result = RenderResult(stack=stack, outdir=str(out))
    for i, (name, manifest) in enumerate(manifests.items()):
        path = out / f"{i:02d}-{name}.yaml"
        path.write_text(to_yaml(manifest), encoding="utf-8")
        result.files.append(str(path))
        result.kinds.append(manifest["kind"])
    volume = next((m for m in manifests.values() if m["kind"] == "PersistentVolume"), None)
    if volume and "REPLACE-ME" in volume["spec"]["csi"]["volumeHandle"]:
        result.notes.append("the PersistentVolume has placeholder EFS ids: pass --file-system-id and --access-point-id "
                            "(terraform output efs_file_system_id / efs_access_point_id) after apply")
    if getattr(config, "node_provisioning", "") == "karpenter":
        result.notes.append("install the Karpenter chart first (see docs/eks.md, 'Training on EKS'): NodePools need its CRDs")
    return result
