"""Stable import path for plugin authors (docs/plugins.md): re-exports ``r1zero.host.hookspecs``."""

from r1zero.host.hookspecs import *  # noqa: F401,F403
