"""Stable import path for plugin authors (docs/plugins.md): re-exports ``r1zero.host.registry`` and ``r1zero.data.templates.get_template``."""

from r1zero.host.registry import *  # noqa: F401,F403
from r1zero.data.templates import get_template  # noqa: F401,E402
