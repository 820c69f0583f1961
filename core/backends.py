"""Stable import path for plugin authors (docs/plugins.md): re-exports ``r1zero.host.backends``."""

from r1zero.host.backends import *  # noqa: F401,F403
