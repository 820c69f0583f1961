"""Stable import path for plugin authors (docs/plugins.md): re-exports ``r1zero.host.errors``."""

from r1zero.host.errors import *  # noqa: F401,F403
