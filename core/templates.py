"""Stable import path for plugin authors (docs/plugins.md): re-exports ``r1zero.data.templates``."""

from r1zero.data.templates import *  # noqa: F401,F403
