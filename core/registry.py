"""Stable import path for plugin authors (docs/plugins.md): re-exports ``r1zero.host.registry``."""

from r1zero.host.registry import *  # noqa: F401,F403
