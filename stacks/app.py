"""The cdktn app: ``cdktf synth`` / ``cdktn synth`` run this (see cdktf.json); so does ``spotkit synth``.

Environment: ``SPOTKIT_CONFIG`` (a YAML/TOML config file), ``SPOTKIT_STACKS`` (comma-separated names;
default all), ``SPOTKIT_OUTDIR`` (default: what the CLI passes in CDKTF_OUTDIR, else cdktf.out).
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

from spotkit.stacks import registry
from spotkit.config import apply_overrides, read_config_file, section


def build_app(names: Sequence[str] | None = None, outdir: str = "cdktf.out",
              config_data: Mapping[str, Any] | None = None):
    from cdktn import App

    config_data = dict(config_data or {})
    specs = registry.resolve(list(names or []))
    unknown = sorted(set(config_data) - set(registry.STACKS) - {"settings", "check", "simulate"})
    if unknown:
        from spotkit.errors import ConfigError

        raise ConfigError(f"{unknown[0]}: not a stack name", hint=f"top-level keys are stack names ({', '.join(sorted(registry.STACKS))}) or 'settings' / 'check' / 'simulate'")
    app = App(outdir=outdir)
    stacks = []
    for spec in specs:
        stack_cls, config_cls = spec.load()
        config = apply_overrides(config_cls(), section(config_data, spec.name), prefix=spec.name)
        stacks.append(stack_cls(app, spec.name, config))
    return app, stacks


def main() -> None:
    config_path = os.environ.get("SPOTKIT_CONFIG")
    data = read_config_file(config_path) if config_path else {}
    names = [n for n in os.environ.get("SPOTKIT_STACKS", "").split(",") if n]
    outdir = os.environ.get("SPOTKIT_OUTDIR") or os.environ.get("CDKTF_OUTDIR") or "cdktf.out"
    app, _ = build_app(names, outdir, data)
    app.synth()


if __name__ == "__main__":
    main()
