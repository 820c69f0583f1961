"""Hooks a plugin meant to implement but did not: a misspelled name is not silent.

``unknown_hooks(pm, plugin)`` uses pluggy's own check (a hookimpl whose name has no hookspec
is an "unverified" hook caller with ``spec is None``) and adds module-level ``register_*``
functions that no hook will call: a name that matches no hookspec, or a hook's name without
``@hookimpl``. Known hook names come from the manager's hookspecs, so new hooks count too.
"""

from __future__ import annotations

import difflib
from typing import Any

import pluggy


def unknown_hooks(pm: pluggy.PluginManager, plugin: Any) -> list[str]:
    """One message per problem, each with the closest hook name."""
    known = sorted(n for n, c in vars(pm.hook).items() if getattr(c, "spec", None))
    callers = pm.get_hookcallers(plugin) or []
    found = [f"hook implementation {c.name!r} matches no hook{_closest(c.name, known)}"
             for c in callers if c.spec is None]
    marked = {c.name for c in callers}
    own = getattr(plugin, "__name__", None)
    for attr, value in sorted(vars(plugin).items()) if hasattr(plugin, "__dict__") else ():
        if not attr.startswith("register_") or attr in marked or not callable(value) \
                or getattr(value, "__module__", None) != own:
            continue
        found.append(f"defines {attr}() without @hookimpl, so it is never called" if attr in known
                     else f"defines {attr}(), which matches no hook{_closest(attr, known)}")
    return found


def _closest(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else f"; hooks are {', '.join(known)}"
