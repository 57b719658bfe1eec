"""Stack settings: frozen dataclasses, overridden from a YAML or TOML file.

A config file maps stack names to overrides of that stack's config dataclass, plus an optional
``settings`` section for toolkit-wide settings (backend, provider mirror...)::

    training:
      name: llm-train
      group:
        instance_types: [g5.xlarge, g6.xlarge, g5.2xlarge]
        max_size: 8
    settings:
      provider_mirror: auto

Every key is checked against the dataclass; a wrong key or type raises a ``ConfigError`` that names
the full key path (``training.group.max_size``) and what it expects. So are the ``settings`` keys
(``SETTINGS_KEYS``; a typo gets a "did you mean"), whole numbers (at most ``MAX_AWS_INTEGER``, the
largest integer AWS APIs take), instance types (against the shipped table,
``modules/instance_table.py``, with close matches) and regions (``check_region``: the regions botocore
knows, in every partition). A key given twice in a YAML or JSON file is refused with its name and line
(TOML refuses it itself); a later value would otherwise replace the first without a word.

TOML needs Python 3.11's ``tomllib`` or, on 3.10, the ``tomli`` package (a dependency there); YAML and
JSON work everywhere.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import difflib
import json
import string
import types
import typing
from pathlib import Path
from typing import Any, Mapping

import yaml

from spotkit.errors import ConfigError, MissingDependencyError

SETTINGS_SECTION = "settings"
# Keys of the ``settings:`` section and what reads them (toolkit/deploy/workflow.py, toolkit/deploy/mirror.py).
SETTINGS_KEYS = ("backend", "provider_mirror")
BACKEND_KEYS = ("type", "bucket", "key", "region", "dynamodb_table", "encrypt", "kms_key_id", "profile", "use_lockfile")
BACKEND_KEY_PLACEHOLDERS = ("stack",)
# AWS APIs take sizes and counts as 32-bit signed integers (Auto Scaling MaxSize, EKS maxSize...);
# a larger number can never be deployed.
MAX_AWS_INTEGER = 2**31 - 1
# Fields holding an AWS region name (stack configs, settings.backend), checked by ``check_region``.
REGION_FIELDS = ("region",)
# Fields holding EC2 instance type names, checked against the shipped instance table.
INSTANCE_TYPE_FIELDS = ("instance_type", "instance_types", "gpu_instance_types", "allowed_instance_types",
                        "excluded_instance_types")


def _toml():
    try:
        import tomllib  # Python 3.11+
    except ModuleNotFoundError:
        try:
            import tomli as tomllib  # the same parser, packaged for 3.10
        except ModuleNotFoundError:
            raise MissingDependencyError(
                "reading a TOML config file needs Python 3.11 or newer, or the 'tomli' package",
                hint="pip install 'tomli>=2' (or write the config as YAML: same keys, a .yaml file)",
            ) from None
    return tomllib


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a mapping that has a key twice (PyYAML keeps the last silently)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                try:
                    first = seen.setdefault(key, line)
                except TypeError:  # an unhashable key: PyYAML's own error says so
                    continue
                if first != line:
                    raise _DuplicateKey(key, line, first)
        return super().construct_mapping(node, deep=deep)


class _DuplicateKey(Exception):
    def __init__(self, key: Any, line: int | None, first: int | None):
        super().__init__(key)
        self.key, self.line, self.first = key, line, first


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json.loads' object_pairs_hook: refuse a key given twice (JSON keeps the last silently)."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key, None, None)
        out[key] = value
    return out


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Parse a YAML, JSON or TOML file into a mapping, with a clear error for each failure."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} does not exist", hint="pass --config with the path of a YAML or TOML file")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"config file {str(p)!r} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start})",
            hint=f"save it as UTF-8, e.g. iconv -f latin1 -t utf-8 {p} > {p.stem}.utf8{p.suffix}",
        ) from exc
    except OSError as exc:
        raise ConfigError(f"config file {str(p)!r} cannot be read: {exc.strerror or exc}",
                          hint="check the file's permissions, or pass --config with another file") from exc
    if p.suffix == ".toml":
        toml = _toml()
        errors: tuple[type[Exception], ...] = (toml.TOMLDecodeError,)
    else:
        errors = (yaml.YAMLError, json.JSONDecodeError)
    try:
        if p.suffix == ".toml":
            data = toml.loads(text)
        elif p.suffix == ".json":
            data = json.loads(text, object_pairs_hook=_unique_pairs)
        else:
            data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except _DuplicateKey as dup:
        where = f" on line {dup.line} (first on line {dup.first})" if dup.line else ""
        raise ConfigError(f"config file {str(p)!r}: the key {dup.key!r} is given twice{where}",
                          hint=f"keep one {dup.key!r} in {p}: the second would replace the first") from None
    except errors as exc:
        raise ConfigError(f"config file {str(p)!r} is not valid {p.suffix.lstrip('.') or 'YAML'}: {exc}",
                          hint="fix the syntax error shown above") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(p)!r} must hold a mapping of stack names to settings, not a {type(data).__name__}",
                          hint="start the file with a stack name, e.g. 'training:'")
    check_settings(data.get(SETTINGS_SECTION))
    return data


def did_you_mean(word: str, choices: Any) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices``, or an empty string."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=3, cutoff=0.6)
    if not close:
        return ""
    return f" (did you mean {' or '.join(repr(c) for c in close)}?)"


def _unknown_key(key_path: str, word: str, choices: Any, section_name: str) -> ConfigError:
    return ConfigError(f"{key_path}: unknown setting{did_you_mean(word, choices)}",
                       hint=f"settings of {section_name} are: {', '.join(sorted(choices))}")


def check_settings(value: Any) -> Mapping[str, Any]:
    """Validate the ``settings:`` section (keys, value types, the backend's key template); return it."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{SETTINGS_SECTION}: expected a mapping, got {value!r}",
                          hint="e.g. settings: {provider_mirror: auto}")
    for key, item in value.items():
        if key not in SETTINGS_KEYS:
            raise _unknown_key(f"{SETTINGS_SECTION}.{key}", key, SETTINGS_KEYS, SETTINGS_SECTION)
        if key == "provider_mirror" and item is not None and not isinstance(item, str):
            raise ConfigError(f"settings.provider_mirror: expected a folder, 'auto' or 'none', got {item!r}")
    backend = value.get("backend")
    if isinstance(backend, Mapping):
        for key in backend:
            if key not in BACKEND_KEYS:
                raise _unknown_key(f"settings.backend.{key}", key, BACKEND_KEYS, "settings.backend")
        if backend.get("key") is not None:
            backend_key(str(backend["key"]), "example")
        if backend.get("region") is not None:
            check_region(str(backend["region"]), "settings.backend.region")
    elif backend not in (None, "local"):
        raise ConfigError(f"settings.backend: expected a mapping, got {backend!r}",
                          hint="e.g. {type: s3, bucket: my-tf-state, dynamodb_table: tf-locks}")
    return value


def backend_key(template: str, stack: str) -> str:
    """The state key for ``stack`` from ``settings.backend.key``; ``{stack}`` is the only placeholder."""
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        raise ConfigError(f"settings.backend.key: {template!r} is not a valid template: {exc}",
                          hint="write braces as {{ and }}, or use the placeholder {stack}") from exc
    unknown = [f for f in fields if f not in BACKEND_KEY_PLACEHOLDERS]
    if unknown:
        raise ConfigError(
            f"settings.backend.key: unknown placeholder {{{unknown[0]}}} in {template!r}"
            f"{did_you_mean(unknown[0], BACKEND_KEY_PLACEHOLDERS)}",
            hint="the only placeholder is {stack} (the stack name), e.g. key: \"spotkit/{stack}.tfstate\"",
        )
    return template.format(stack=stack)


def aws_regions() -> list[str]:
    """Every region botocore knows, in every partition (aws, aws-cn, aws-us-gov...), sorted."""
    import importlib.util

    spec = importlib.util.find_spec("botocore")  # its data file, without importing botocore (spotkit check)
    data = Path(list(spec.submodule_search_locations)[0]) / "data" / "partitions.json"
    partitions = json.loads(data.read_text())["partitions"]
    return sorted(r for p in partitions for r in p.get("regions", {}) if not r.endswith("-global"))


def check_region(value: str, key: str) -> str:
    """Refuse a name that is not an AWS region, with close matches and the list."""
    regions = aws_regions()
    if value in regions:
        return value
    raise ConfigError(
        f"{key}: {value!r} is not an AWS region{did_you_mean(value, regions)}",
        hint=f"use one of: {', '.join(regions)}",
    )


def check_instance_type(value: str, key: str) -> str:
    """Refuse a name that is not in the shipped instance table (wildcards like ``g5.*`` pass)."""
    from spotkit.constructs.instance_table import INSTANCE_TYPES

    if "*" in value or value in INSTANCE_TYPES:
        return value
    close = difflib.get_close_matches(value, list(INSTANCE_TYPES), n=3, cutoff=0.6)
    raise ConfigError(
        f"{key}: {value!r} is not an EC2 instance type" + (f" (close: {', '.join(close)})" if close else ""),
        hint="use a type from 'aws ec2 describe-instance-types' (the shipped table is modules/instance_table.py), "
             "e.g. g5.xlarge",
    )


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
    if origin in (dict, collections.abc.Mapping) or tp in (dict, Mapping):  # tags: Mapping[str, str]...
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
            if abs(value) > MAX_AWS_INTEGER:
                raise ConfigError(
                    f"{key}: {value} is out of range: AWS takes whole numbers up to {MAX_AWS_INTEGER:,} "
                    "(a 32-bit integer) for sizes and counts",
                    hint=f"set {key.rsplit('.', 1)[-1]} to the number you need, within your account's quotas",
                )
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
                f"{key}: unknown setting{did_you_mean(name, fields)}",
                hint=f"settings of {prefix or type(base).__name__} are: {', '.join(sorted(fields))}",
            )
        tp = hints[name]
        current = getattr(base, name)
        if dataclasses.is_dataclass(current) and isinstance(value, Mapping):
            changes[name] = apply_overrides(current, value, prefix=key)
        else:
            changes[name] = _coerce(value, tp, key)
            if name in INSTANCE_TYPE_FIELDS:
                _check_instance_types(changes[name], key)
            if name in REGION_FIELDS and isinstance(changes[name], str):
                check_region(changes[name], key)
    try:
        return dataclasses.replace(base, **changes)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        # __post_init__ validation of the dataclass itself
        raise ConfigError(f"{prefix or 'config'}: {exc}") from exc


def _check_instance_types(value: Any, key: str) -> None:
    if isinstance(value, str):
        check_instance_type(value, key)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            if isinstance(item, str):
                check_instance_type(item, f"{key}[{i}]")


def section(data: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = data.get(name) or {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{name}: expected a mapping of settings, got {value!r}")
    return value
