"""Stack settings: frozen dataclasses, overridden from a YAML or TOML file.

A config file maps stack names to overrides of that stack's config dataclass, plus an optional
``settings`` section for toolkit-wide settings (backend, provider mirror...)::

    training:
      name: llm-train
      group:
        instance_types: [g5.xlarge, g6.xlarge, g5.2xlarge]
        max_size: 8
    settings:
      region: eu-west-1

Every key is checked against the dataclass; a wrong key or type raises a ``ConfigError`` that names
the full key path (``training.group.max_size``) and what it expects.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, Mapping

import yaml

from toolkit.errors import ConfigError

SETTINGS_SECTION = "settings"


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Parse a YAML, JSON or TOML file into a mapping, with a clear error for each failure."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} does not exist", hint="pass --config with the path of a YAML or TOML file")
    text = p.read_text(encoding="utf-8")
    try:
        if p.suffix == ".toml":
            data = tomllib.loads(text)
        elif p.suffix == ".json":
            data = json.loads(text)
        else:
            data = yaml.safe_load(text)
    except (yaml.YAMLError, tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"config file {str(p)!r} is not valid {p.suffix.lstrip('.') or 'YAML'}: {exc}",
                          hint="fix the syntax error shown above") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(p)!r} must hold a mapping of stack names to settings, not a {type(data).__name__}",
                          hint="start the file with a stack name, e.g. 'training:'")
    return data


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin in (list, tuple):
        args = typing.get_args(tp)
        return f"a list of {_type_name(args[0])}" if args else "a list"
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as exc:
                errors.append(exc)
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin is typing.Literal:
        if value in typing.get_args(tp):
            return value
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
        args = typing.get_args(tp)
        item_tp = args[0] if args else Any
        return tuple(_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value))
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        args = typing.get_args(tp)
        vtp = args[1] if len(args) == 2 else Any
        return {str(k): _coerce(v, vtp, f"{key}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return apply_overrides(tp(), value, prefix=key)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected a whole number, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    return value


def apply_overrides(base: Any, overrides: Mapping[str, Any], prefix: str = "") -> Any:
    """Return a copy of the frozen dataclass ``base`` with ``overrides`` applied, type-checked.

    Nested dataclass fields merge (only the keys given change). Unknown keys are errors that list
    the keys that exist.
    """
    if not isinstance(overrides, Mapping):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {overrides!r}")
    hints = typing.get_type_hints(type(base))
    fields = {f.name: f for f in dataclasses.fields(base) if f.init}
    changes: dict[str, Any] = {}
    for raw_key, value in overrides.items():
        name = str(raw_key).replace("-", "_")
        key = f"{prefix}.{raw_key}" if prefix else str(raw_key)
        if name not in fields:
            raise ConfigError(
                f"{key}: unknown setting",
                hint=f"settings of {prefix or type(base).__name__} are: {', '.join(sorted(fields))}",
            )
        tp = hints[name]
        current = getattr(base, name)
        if dataclasses.is_dataclass(current) and isinstance(value, Mapping):
            changes[name] = apply_overrides(current, value, prefix=key)
        else:
            changes[name] = _coerce(value, tp, key)
    try:
        return dataclasses.replace(base, **changes)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        # __post_init__ validation of the dataclass itself
        raise ConfigError(f"{prefix or 'config'}: {exc}") from exc


def section(data: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = data.get(name) or {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{name}: expected a mapping of settings, got {value!r}")
    return value
