"""The ``r1zero`` command line (``main``) and the commands it runs."""

from r1zero.cli.main import main

__all__ = ["main"]
