"""Loading ``RecipeConfig`` from YAML + dotted overrides, with errors that name file and key."""

from __future__ import annotations

import difflib
import math
import re
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
        data = _merge(data, read_yaml_mapping(path))
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} must look like key.sub=value", path="<command line>")
        try:
            value = _safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {item!r}: the value is not valid YAML "
                              f"({_yaml_reason(exc)}); quote it, e.g. {key.strip()}='\"...\"'",
                              path="<command line>", key=key.strip()) from None
        tree: dict[str, Any] = value
        for part in reversed(key.strip().split(".")):
            tree = {part: tree}
        data = _merge(data, tree)
    return structure(RecipeConfig, data, where)


def read_yaml_mapping(path: str | Path, missing: str = "config file not found") -> dict:
    """A YAML file whose top level is a mapping (an empty file is ``{}``), read with the same
    guards as a recipe: see :func:`read_yaml_file`."""
    loaded = read_yaml_file(path, missing)
    if loaded is not None and not isinstance(loaded, dict):
        raise ConfigError("top level must be a mapping", path=str(path))
    return loaded or {}


def read_yaml_file(path: str | Path, missing: str = "config file not found") -> Any:
    """Parse a YAML file with bounded alias expansion; a directory, a missing file, non-UTF-8
    text or invalid YAML is a ConfigError naming the file."""
    path, where = Path(path), str(path)
    if path.is_dir():
        raise ConfigError("is a directory, not a config file", path=where)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(missing, path=where) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text (byte {exc.start}: {exc.reason})", path=where) from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror or exc}", path=where) from None
    try:
        return _safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML: {exc}", path=where) from None
    except ConfigError as exc:
        raise ConfigError(exc.message, path=where) from None


# A config is a few hundred values; anchors and aliases may not expand it past this many
# nodes (a 1.4 KB "billion laughs" file would otherwise expand to ~10^9).
MAX_YAML_NODES = 100_000


def _safe_load(text: str) -> Any:
    """``yaml.safe_load`` that refuses documents whose aliases expand past ``MAX_YAML_NODES``
    nodes, or that nest too deeply or refer to themselves."""
    loader = yaml.SafeLoader(text)
    try:
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            size = _expanded_size(node, {})
        except RecursionError:
            raise ConfigError("nested too deeply") from None
        if size > MAX_YAML_NODES:
            raise ConfigError(f"anchors and aliases expand to {size:.3g} nodes (at most "
                              f"{MAX_YAML_NODES} are read): a YAML alias bomb?")
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _expanded_size(node: yaml.Node, memo: dict[int, int]) -> int:
    """Nodes in ``node`` once every alias is expanded (shared sub-trees counted each time)."""
    key = id(node)
    if key in memo:
        if memo[key] < 0:
            raise ConfigError("an anchor refers to itself (recursive alias)")
        return memo[key]
    memo[key] = -1
    total = 1
    if isinstance(node, yaml.MappingNode):
        total += sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
    elif isinstance(node, yaml.SequenceNode):
        total += sum(_expanded_size(v, memo) for v in node.value)
    memo[key] = total
    return total


def _yaml_reason(exc: yaml.YAMLError) -> str:
    problem = getattr(exc, "problem", None)
    return problem or str(exc).splitlines()[0]


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
        # attrs validators raise ValueError(message, attribute, ...): the message alone
        first = exc.args[0] if exc.args and isinstance(exc.args[0], str) else str(exc)
        message, key = first, prefix or None
        named = re.match(r"'(\w+)' (.*)", message, re.S)      # attrs: "'lr' must be > 0: -1"
        if named and named[1] in fields:
            message, key = named[2], f"{prefix}.{named[1]}" if prefix else named[1]
        raise ConfigError(message, path=where, key=key) from exc


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
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):   # YAML 1.1 reads "1e-6" as a string
            try:
                number = float(value)
            except ValueError:
                pass
        if number is not None:
            if not math.isfinite(number):   # every float of a recipe is finite
                raise ConfigError(f"must be a finite number, got {value!r}", path=where, key=key)
            return number
    elif tp is str:
        if isinstance(value, str):
            _check_text(value, where, key)
            return value
    else:
        return value
    raise _type_error(tp.__name__, value, where, key)


def _check_text(value: str, where: str, key: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ConfigError(f"not valid Unicode text (a lone surrogate at character {exc.start})",
                          path=where, key=key) from None


def _type_error(expected: str, value: Any, where: str, key: str) -> ConfigError:
    return ConfigError(f"expected {expected}, got {_show(value)}", path=where, key=key)


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else f"{type(value).__name__} {value!r}"


def to_dict(cfg: RecipeConfig) -> dict[str, Any]:
    return attrs.asdict(cfg, recurse=True)


def dump_yaml(cfg: RecipeConfig) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False, allow_unicode=True)


RECIPE_FILE = "recipe.yaml"


def write_recipe(cfg: RecipeConfig, ckpt_dir: str | Path) -> Path:
    """Save the resolved recipe beside the checkpoints, for ``r1zero eval`` to find."""
    root = Path(ckpt_dir)
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{RECIPE_FILE}.tmp"
    tmp.write_text(dump_yaml(cfg), encoding="utf-8")
    tmp.replace(root / RECIPE_FILE)
    return root / RECIPE_FILE
