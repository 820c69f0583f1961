"""Loading ``RecipeConfig`` from YAML + dotted overrides, with errors that name file and key."""

from __future__ import annotations

import difflib
import types
import typing
from pathlib import Path
from typing import Any, Iterable, Mapping

import attrs
import yaml

from r1zero.config.recipe import RecipeConfig
from r1zero.host.errors import ConfigError

_NONE = type(None)


def load_config(path: str | Path | None = None, overrides: Iterable[str] = (),
                base: Mapping[str, Any] | None = None) -> RecipeConfig:
    """YAML file (optional) -> merged with ``base`` and ``key.sub=value`` overrides -> config."""
    data: dict[str, Any] = dict(base or {})
    where = str(path) if path else "<config>"
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError("config file not found", path=where) from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"not valid YAML: {exc}", path=where) from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError("top level must be a mapping", path=where)
        data = _merge(data, loaded or {})
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} must look like key.sub=value", path="<command line>")
        value = yaml.safe_load(raw) if raw.strip() else ""
        tree: dict[str, Any] = value
        for part in reversed(key.strip().split(".")):
            tree = {part: tree}
        data = _merge(data, tree)
    return structure(RecipeConfig, data, where)


def _merge(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


def structure(cls: type, data: Any, where: str, prefix: str = "") -> Any:
    """Build attrs class ``cls`` from plain data, checking every key and type."""
    if isinstance(data, cls):
        return data
    if not isinstance(data, Mapping):
        raise ConfigError(f"expected a mapping, got {_show(data)}", path=where, key=prefix or None)
    fields = {f.name: f for f in attrs.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.5)
            hint = f"; did you mean {(prefix + '.' if prefix else '') + close[0]!r}?" if close else ""
            raise ConfigError(f"unknown key{hint} valid keys here: {', '.join(fields)}",
                              path=where, key=dotted)
        kwargs[key] = _convert(hints[key], value, where, dotted)
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:
        raise ConfigError(str(exc), path=where, key=prefix or None) from exc


def _convert(tp: Any, value: Any, where: str, key: str) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and _NONE in args:
            return None
        inner = [a for a in args if a is not _NONE]
        return _convert(inner[0] if len(inner) == 1 else Any, value, where, key)
    if tp is Any:
        return value
    if attrs.has(tp):
        return structure(tp, {} if value is None else value, where, key)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise _type_error("list", value, where, key)
        return [_convert(args[0], v, where, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise _type_error("mapping", value, where, key)
        return {str(k): _convert(args[1], v, where, f"{key}.{k}") for k, v in value.items()}
    return _scalar(tp, value, where, key)


def _scalar(tp: type, value: Any, where: str, key: str) -> Any:
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):   # YAML 1.1 reads "1e-6" as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
    else:
        return value
    raise _type_error(tp.__name__, value, where, key)


def _type_error(expected: str, value: Any, where: str, key: str) -> ConfigError:
    return ConfigError(f"expected {expected}, got {_show(value)}", path=where, key=key)


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else f"{type(value).__name__} {value!r}"


def to_dict(cfg: Any) -> dict[str, Any]:
    return attrs.asdict(cfg, recurse=True)


def dump_yaml(cfg: Any) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False, allow_unicode=True)
