"""Typed recipe configuration (``recipe``) and its YAML + dotted-override loader (``load``)."""

from r1zero.config.recipe import *  # noqa: F401,F403  (``from r1zero.config import RecipeConfig``)
