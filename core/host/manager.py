"""The plugin manager: loads the ``r1zero`` entry-point group and local modules, collects
what each plugin registers through the five hooks, and looks things up by name.

Built-ins are entry points of r1zero's own distribution, so they travel the same path as a
third-party package. Loading is lazy and idempotent; failures are recorded, not swallowed:
``r1zero plugins`` shows them and a lookup that misses names them.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import importlib.util
import logging
import os
import sys
from pathlib import Path
from typing import Any, Callable, Iterable

import attrs
import pluggy

from r1zero.host import hookspecs
from r1zero.host.errors import PluginError
from r1zero.host.hookcheck import unknown_hooks

log = logging.getLogger("r1zero.host.manager")
GROUP = "r1zero"
# kind -> (hook name, human noun, attributes a registered thing must have)
KINDS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "templates": ("register_templates", "template", ("name", "render")),
    "dataset_handlers": ("register_dataset_handlers", "dataset handler", ("name", "convert")),
    "rewards": ("register_rewards", "reward scorer", ("name", "score")),
    "backends": ("register_backends", "backend", ("name", "is_available")),
    # one hook, four kinds: each registered piece says which by its ``kind`` attribute
    "algorithms": ("register_algorithms", "algorithm", ("name", "kind", "advantage", "policy_loss")),
    "advantage_estimators": ("register_algorithms", "advantage estimator", ("name", "kind", "fn")),
    "policy_losses": ("register_algorithms", "policy loss", ("name", "kind", "fn")),
    "kl_controllers": ("register_algorithms", "KL controller", ("name", "kind", "make")),
    "rollout_corrections": ("register_algorithms", "rollout correction", ("name", "kind", "fn")),
}
# the ``kind`` attribute of a piece registered through register_algorithms -> its kind
PIECE_KINDS = {"algorithm": "algorithms", "advantage_estimator": "advantage_estimators",
               "policy_loss": "policy_losses", "kl_controller": "kl_controllers",
               "rollout_correction": "rollout_corrections"}


@attrs.define
class PluginInfo:
    name: str                   # entry-point name, or module name for local plugins
    module: str
    distribution: str | None = None
    version: str | None = None
    source: str = "installed"   # built-in | installed | local
    registered: dict[str, list[str]] = attrs.field(factory=dict)
    error: str | None = None
    disabled: bool = False

    def label(self) -> str:
        dist = f"{self.distribution} ({self.version})" if self.distribution else self.source
        return f"'{self.name}' [{dist}]"


@attrs.define
class Registration:
    kind: str
    name: str
    obj: Any
    plugin: PluginInfo


class PluginHost:
    """One plugin manager plus what its plugins registered. Tests make fresh ones."""

    def __init__(self, modules: Iterable[str] = (), disable: Iterable[str] = (),
                 entry_points: bool = True, strict: bool = False):
        self.pm = pluggy.PluginManager(GROUP)
        self.pm.add_hookspecs(hookspecs)
        self.modules = list(modules) + _env_modules()
        self.disable = set(disable)
        self.entry_points, self.strict = entry_points, strict
        self.plugins: dict[str, PluginInfo] = {}
        self._items: dict[str, list[Registration]] | None = None
        self._loaded = False

    # -- loading -----------------------------------------------------------------
    def load(self) -> "PluginHost":
        if self._loaded:
            return self
        self._loaded = True
        if self.entry_points:
            for ep in sorted(md.entry_points(group=GROUP), key=lambda e: e.name):
                dist = ep.dist.metadata["Name"] if ep.dist else None
                info = PluginInfo(ep.name, ep.value, dist, ep.dist.version if ep.dist else None,
                                  "built-in" if dist == "r1zero" else "installed")
                self._add(info, ep.load)
        for mod in self.modules:
            self._add(PluginInfo(mod, mod, source="local"), lambda m=mod: _import_local(m))
        return self

    def _add(self, info: PluginInfo, loader: Callable[[], Any]) -> None:
        if info.name in self.plugins:   # e.g. two distributions using one entry-point name
            other = self.plugins[info.name]
            info = attrs.evolve(info, name=f"{info.name}@{info.distribution or info.source}")
            log.warning("plugin name %r used by both %s and %s", other.name, other.label(),
                        info.label())
        self.plugins[info.name] = info
        if info.name in self.disable or info.module in self.disable:
            info.disabled = True
            self.pm.set_blocked(info.name)
            return
        try:
            module = loader()
            self.pm.register(module, name=info.name)
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - any import-time failure is the plugin's
            self._fail(info, f"failed to import {info.module}: {_describe(exc)}", exc)
            return
        unknown = unknown_hooks(self.pm, module)
        if unknown:
            self._fail(info, "; ".join(unknown))

    def _fail(self, info: PluginInfo, message: str, exc: BaseException | None = None) -> None:
        info.error = message
        log.warning("plugin %s: %s", info.label(), message)
        if self.strict:
            raise PluginError(f"plugin {info.label()}: {message}", plugin=info.name) from exc

    # -- collecting --------------------------------------------------------------
    def items(self, kind: str) -> list[Registration]:
        if self._items is None:
            self.load()
            self._items = {k: [] for k in KINDS}
            for hook_name in dict.fromkeys(h for h, _, _ in KINDS.values()):
                self._collect(hook_name)
        return self._items[kind]

    def _collect(self, hook_name: str) -> None:
        kinds = [k for k, (h, _, _) in KINDS.items() if h == hook_name]
        for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
            info = self.plugins.get(impl.plugin_name) or self._adopt(impl.plugin_name)
            staged: list[Registration] = []

            def register(obj: Any, name: str | None = None, _staged=staged, _info=info) -> None:
                kind = kinds[0] if len(kinds) == 1 else _piece_kind(obj, _info)
                _, noun, required = KINDS[kind]
                missing = [a for a in required if not hasattr(obj, a)]
                if missing:
                    raise PluginError(f"registered a {noun} {obj!r} without {missing}",
                                      plugin=_info.name)
                nm = name or getattr(obj, "name")
                if not isinstance(nm, str) or not nm:
                    raise PluginError(f"registered a {noun} with no valid name: {nm!r}",
                                      plugin=_info.name)
                _staged.append(Registration(kind, nm, obj, _info))

            try:
                impl.function(register=register)
            except (Exception, SystemExit) as exc:  # noqa: BLE001
                self._fail(info, f"{hook_name} raised {_describe(exc)}", exc)
                continue
            for r in staged:
                self._items[r.kind].append(r)
                info.registered.setdefault(r.kind, []).append(r.name)

    def _adopt(self, plugin_name: str) -> PluginInfo:
        """A plugin registered directly with ``pm.register`` (tests, embedding apps)."""
        info = PluginInfo(plugin_name, plugin_name, source="local")
        self.plugins[plugin_name] = info
        return info

    def register(self, obj: Any, name: str) -> None:
        """Register an in-memory plugin object (used by tests and the trainer's demo)."""
        self.pm.register(obj, name=name)
        self._adopt(name)
        self._items = None

    def unregister(self, name: str) -> None:
        self.pm.unregister(name=name)
        self.plugins.pop(name, None)
        self._items = None

    # -- lookup ------------------------------------------------------------------
    def names(self, kind: str) -> list[str]:
        return sorted({r.name for r in self.items(kind)})

    def get(self, kind: str, name: str, plugin: str | None = None, pick_key: str = "") -> Any:
        """The object registered under ``name``; ``plugin`` picks among colliding ones."""
        noun = KINDS[kind][1]
        found = [r for r in self.items(kind) if r.name == name]
        if plugin is not None:
            chosen = [r for r in found if plugin in (r.plugin.name, r.plugin.distribution,
                                                     r.plugin.module)]
            if not chosen:
                have = ", ".join(r.plugin.label() for r in found) or "none"
                raise PluginError(f"{noun} {name!r} from plugin {plugin!r} not found; "
                                  f"registered by: {have}", plugin=plugin)
            found = chosen
        if len(found) > 1:
            who = " and ".join(r.plugin.label() for r in found)
            if pick_key:
                how = f"pick one with `{pick_key}:` in the config"
            else:       # no config key picks among these: rename, or switch a plugin off
                others = [r.plugin.name for r in found if r.plugin.source != "built-in"]
                how = (f"rename one, or switch a plugin off with `plugins.disable: "
                       f"[{others[-1] if others else found[-1].plugin.name}]`")
            raise PluginError(f"{noun} {name!r} is registered by both {who}; {how}", plugin=name)
        if not found:
            raise PluginError(self._missing_message(kind, name), plugin=name)
        return found[0].obj

    def _missing_message(self, kind: str, name: str) -> str:
        noun = KINDS[kind][1]
        disabled = sorted(p.name for p in self.plugins.values() if p.disabled)
        msg = (f"unknown {noun} {name!r}; available: {', '.join(self.names(kind)) or 'none'}"
               f" (disabled: {', '.join(disabled) or 'none'})")
        failed = [p for p in self.plugins.values() if p.error]
        if failed:
            msg += "; plugins that failed to load: " + "; ".join(
                f"{p.label()}: {p.error}" for p in failed)
        return msg


def _describe(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return f"SystemExit({exc.code!r}): the plugin tried to end the process"
    return f"{type(exc).__name__}: {exc}"


def _piece_kind(obj: Any, info: PluginInfo) -> str:
    """The kind of a piece registered through ``register_algorithms`` (its ``kind``)."""
    tag = getattr(obj, "kind", None)
    if tag not in PIECE_KINDS:
        raise PluginError(f"register_algorithms got {obj!r} whose kind is {tag!r}; expected "
                          f"one of {', '.join(PIECE_KINDS)}", plugin=info.name)
    return PIECE_KINDS[tag]


def _env_modules() -> list[str]:
    raw = os.environ.get("R1ZERO_PLUGINS", "")
    return [m.strip() for m in raw.replace(os.pathsep, ",").split(",") if m.strip()]


def _import_local(spec: str):
    """A dotted module name, or a path to a ``.py`` file."""
    if spec.endswith(".py"):
        path = Path(spec).expanduser().resolve()
        if not path.exists():
            raise FileNotFoundError(f"no such plugin file: {path}")
        mod_name = f"r1zero_local_{path.stem}"
        loader_spec = importlib.util.spec_from_file_location(mod_name, path)
        module = importlib.util.module_from_spec(loader_spec)
        sys.modules[mod_name] = module
        loader_spec.loader.exec_module(module)
        return module
    return importlib.import_module(spec)


_default: PluginHost | None = None


def reset_host() -> None:
    """Forget the process-wide host, e.g. after installing a plugin package in-process."""
    global _default
    _default = None


def get_host(modules: Iterable[str] = (), disable: Iterable[str] = (),
             strict: bool = False, fresh: bool = False) -> PluginHost:
    """The process-wide host, created lazily; ``fresh`` or different settings rebuild it."""
    global _default
    key = (tuple(modules), tuple(sorted(disable)), strict)
    if fresh or _default is None or getattr(_default, "_key", None) != key:
        _default = PluginHost(modules, disable, strict=strict)
        _default._key = key
    return _default.load()
