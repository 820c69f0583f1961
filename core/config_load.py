"""Stable import path for plugin authors (docs/plugins.md): re-exports ``r1zero.config.load``."""

from r1zero.config.load import *  # noqa: F401,F403
