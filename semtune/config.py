"""Typed, frozen configuration: YAML is parsed here, once, and nowhere else.

Every config in semtune is a frozen ``@dataclass(kw_only=True)``; this module turns nested
mappings (from YAML files, presets and ``key.path=value`` overrides) into those dataclasses and
rejects unknown keys and ill-typed values with an error that names the source and the key.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

import yaml

__all__ = [
    "check_keys",
    "ConfigError",
    "apply_overrides",
    "from_dict",
    "get_path",
    "load_yaml",
    "parse_override",
    "replace_path",
    "require_non_negative",
    "require_positive",
    "to_dict",
]

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file, override or value is invalid; the message names the source and key."""


def require_positive(name: str, value: float) -> None:
    """For a config dataclass's ``__post_init__``: ValueError naming ``name`` unless > 0."""
    if not value > 0:  # NaN fails too
        raise ValueError(f"{name} must be > 0, got {value!r}")


def require_non_negative(name: str, value: float) -> None:
    """For a config dataclass's ``__post_init__``: ValueError naming ``name`` unless >= 0."""
    if not value >= 0:  # NaN fails too
        raise ValueError(f"{name} must be >= 0, got {value!r}")


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping from ``path``.

    Raises:
        ConfigError: the file is missing, not valid YAML, or not a mapping at the top level.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def parse_override(text: str) -> tuple[str, Any]:
    """Split ``"loss.gamma=5"`` into ``("loss.gamma", 5)``; the value is parsed as YAML."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"override {text!r}: expected PATH=VALUE, e.g. loss.gamma=5")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {text!r}: value is not valid YAML: {exc}") from exc
    return key, value


def apply_overrides(data: Mapping[str, Any], overrides: Sequence[str | tuple[str, Any]]) -> dict:
    """A deep copy of ``data`` with dotted-path overrides set (``"a.b=1"`` or ``(path, v)``)."""
    out = _deep_copy(data)
    for item in overrides:
        key, value = parse_override(item) if isinstance(item, str) else item
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                raise ConfigError(f"override {key!r}: {part!r} is a value, not a section")
            node = child
        node[parts[-1]] = value
    return out


def from_dict(
    cls: type[T], data: Mapping[str, Any] | None, *, source: str = "config", where: str = ""
) -> T:
    """Build the frozen dataclass ``cls`` from a nested mapping, checking keys and types.

    Args:
        cls: a dataclass type whose fields are primitives, ``Literal``, optional, tuples or
            nested dataclasses.
        data: the mapping; missing keys take the dataclass defaults.
        source: named in error messages (usually the YAML file).
        where: the mapping's own key path in a larger file (``sampler``), put in front of the
            keys that error messages name.

    Raises:
        ConfigError: unknown key, wrong type, or a value rejected by the dataclass itself.
    """
    return _build(cls, {} if data is None else data, source, where)


def check_keys(data: Any, valid: Sequence[str], source: str, where: str = "") -> None:
    """ConfigError unless ``data`` is a mapping whose keys are all in ``valid``; the message
    names the file, the key's full path and the valid keys."""
    label = where or "<top level>"
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: {label}: expected a mapping, got {data!r}")
    for key in data:
        if key not in valid:
            prefix = f"{where}." if where else ""
            raise ConfigError(
                f"{source}: unknown key {prefix}{key} (valid keys"
                f"{' in ' + where if where else ''}: {', '.join(valid)})"
            )


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain nested dict of a config dataclass (tuples become lists, YAML friendly)."""

    def conv(v: Any) -> Any:
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            return {f.name: conv(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, tuple | list):
            return [conv(x) for x in v]
        return v

    return conv(cfg)


def get_path(cfg: Any, path: str) -> Any:
    """Value at a dotted path of a config dataclass; ConfigError naming the path if absent."""
    node = cfg
    for i, part in enumerate(path.split(".")):
        if not (
            dataclasses.is_dataclass(node) and part in {f.name for f in dataclasses.fields(node)}
        ):
            done = ".".join(path.split(".")[:i]) or "<root>"
            valid = _field_names(node)
            raise ConfigError(
                f"unknown config key {path!r}: {done} has no {part!r} (valid: {valid})"
            )
        node = getattr(node, part)
    return node


def replace_path(cfg: T, path: str, value: Any, *, source: str = "override") -> T:
    """A copy of ``cfg`` with the value at ``path`` replaced (type-checked like ``from_dict``)."""
    get_path(cfg, path)  # raises with the valid keys listed
    data = apply_overrides(to_dict(cfg), [(path, value)])
    return from_dict(type(cfg), data, source=source)


def _field_names(node: Any) -> str:
    if dataclasses.is_dataclass(node):
        return ", ".join(f.name for f in dataclasses.fields(node))
    return "none (it is a value)"


def _deep_copy(data: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, Mapping) else v for k, v in data.items()}


def _build(cls: type[T], data: Any, source: str, where: str) -> T:
    label = where or "<root>"
    if dataclasses.is_dataclass(data) and isinstance(data, cls):
        return data
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    check_keys(data, list(fields), source, where)
    kwargs = {}
    for name, value in data.items():
        path = f"{where}.{name}" if where else name
        kwargs[name] = _coerce(hints[name], value, source, path)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"{source}: {label}: {exc}") from exc


def as_number(value: Any) -> float | None:
    """``value`` as a float, or None when it is not a number. Strings that spell one are read
    (YAML 1.1, as PyYAML reads it, takes ``1e-3`` and ``5e-5`` for strings), so are YAML's
    ``.nan``/``.inf``: callers must still check that the number is finite."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in (".nan", ".inf", "+.inf", "-.inf"):
            text = text.replace(".", "")
        try:
            return float(text)
        except ValueError:
            return None
    return None


def _coerce(tp: Any, value: Any, source: str, path: str) -> Any:
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, source, path)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[-1] if errors else f"{source}: {path}: got {value!r}")
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices:
            raise ConfigError(
                f"{source}: {path}: {value!r} is not one of {', '.join(map(repr, choices))}"
            )
        return value
    if origin is tuple:
        args = get_args(tp)
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{source}: {path}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, source, f"{path}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ConfigError(f"{source}: {path}: expected {len(args)} values, got {len(value)}")
        return tuple(
            _coerce(a, v, source, f"{path}[{i}]")
            for i, (a, v) in enumerate(zip(args, value, strict=True))
        )
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _build(tp, value, source, path)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: {path}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{source}: {path}: expected an integer, got {value!r}")
        return value
    if tp is float:
        number = as_number(value)
        if number is None:
            raise ConfigError(f"{source}: {path}: expected a number, got {value!r}")
        if not math.isfinite(number):
            raise ConfigError(f"{source}: {path}: must be a finite number, got {value!r}")
        return number
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{source}: {path}: expected a string, got {value!r}")
        return value
    if tp is Any:
        return value
    raise ConfigError(f"{source}: {path}: unsupported config type {tp!r}")
