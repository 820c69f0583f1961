"""Stable import path for plugin authors (docs/plugins.md): re-exports ``r1zero.engines.backend``."""

from r1zero.engines.backend import *  # noqa: F401,F403
