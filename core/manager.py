"""Stable import path for plugin authors (docs/plugins.md): re-exports ``r1zero.host.manager``."""

from r1zero.host.manager import *  # noqa: F401,F403
