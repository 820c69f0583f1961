"""Config-aware lookups: turn the names in a ``RecipeConfig`` into plugin objects.

Every lookup takes the run's ``PluginHost``; there is no process-wide fallback, so a plugin
loaded from ``plugins.modules`` is found everywhere the run looks for it. ``host_for(cfg)``
builds that host once per run (``r1zero.data.pipeline.from_config`` is its usual caller).
Templates are looked up by ``r1zero.data.templates.get_template`` (a templates.json file may
define them too).
"""

from __future__ import annotations

from typing import Any, Mapping

from r1zero.host.errors import ConfigError, PluginError
from r1zero.host.manager import PluginHost, get_host


def host_for(cfg: Any) -> PluginHost:
    """The plugin host of a config: entry points plus its ``plugins:`` section."""
    p = cfg.plugins
    return get_host(p.modules, p.disable, p.strict)


def get_handler(name: str, plugin: str | None = None, *, host: PluginHost) -> Any:
    return host.get("dataset_handlers", name, plugin, "data.handler_plugin")


def get_reward(name: str, options: Mapping[str, Any] | None = None, plugin: str | None = None, *,
               host: PluginHost) -> Any:
    """A reward scorer by name, configured with ``options`` through its ``configure``."""
    scorer = host.get("rewards", name, plugin, f"rewards.{name}.plugin")
    if options:
        configure = getattr(scorer, "configure", None)
        if configure is None:
            raise PluginError(f"reward scorer {name!r} takes no options but "
                              f"rewards.{name}.options = {dict(options)!r}", plugin=name)
        try:
            scorer = configure(**options)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"reward scorer {name!r}: {exc}", key=f"rewards.{name}.options") from exc
    return scorer


def get_scorers(cfg: Any, *, host: PluginHost) -> list[tuple[Any, float]]:
    """(scorer, weight) for every entry of ``cfg.rewards``."""
    return [(get_reward(name, rc.options, rc.plugin, host=host), rc.weight)
            for name, rc in cfg.rewards.items()]


def get_backend(name: str, plugin: str | None = None, *, host: PluginHost) -> Any:
    return host.get("backends", name, plugin, "backend.plugin")
