"""Config-aware lookups: turn the names in a ``RecipeConfig`` into plugin objects."""

from __future__ import annotations

from typing import Any, Mapping

from r1zero.host.errors import ConfigError, PluginError
from r1zero.host.manager import PluginHost, get_host
from r1zero.data.templates import Template, load_templates_file


def host_for(cfg: Any = None) -> PluginHost:
    """The plugin host for a config (its ``plugins:`` section), or the default one."""
    if cfg is None:
        return get_host()
    p = cfg.plugins
    return get_host(p.modules, p.disable, p.strict)


def get_template(name: str, file: str | None = None, plugin: str | None = None,
                 host: PluginHost | None = None) -> Template:
    """A template by name; entries of ``file`` (templates.json) take precedence."""
    if file:
        entries = {t.name: t for t in load_templates_file(file)}
        if name in entries:
            return entries[name]
        if plugin is None and name not in (host or get_host()).names("templates"):
            raise ConfigError(f"template {name!r} is neither in this file ({', '.join(entries)}) "
                              f"nor registered ({', '.join((host or get_host()).names('templates'))})",
                              path=file)
    return (host or get_host()).get("templates", name, plugin, "template.plugin")


def get_handler(name: str, plugin: str | None = None, host: PluginHost | None = None) -> Any:
    return (host or get_host()).get("dataset_handlers", name, plugin, "data.handler_plugin")


def get_reward(name: str, options: Mapping[str, Any] | None = None, plugin: str | None = None,
               host: PluginHost | None = None) -> Any:
    """A reward scorer by name, configured with ``options`` through its ``configure``."""
    scorer = (host or get_host()).get("rewards", name, plugin, f"rewards.{name}.plugin")
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


def get_scorers(cfg: Any, host: PluginHost | None = None) -> list[tuple[Any, float]]:
    """(scorer, weight) for every entry of ``cfg.rewards``."""
    host = host or host_for(cfg)
    return [(get_reward(name, rc.options, rc.plugin, host), rc.weight)
            for name, rc in cfg.rewards.items()]


def get_backend(name: str, plugin: str | None = None, host: PluginHost | None = None) -> Any:
    return (host or get_host()).get("backends", name, plugin, "backend.plugin")
