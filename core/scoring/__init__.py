"""Scoring: the pool every reward scorer runs in (``pool``) and its worker processes (``workers``).

``from r1zero.scoring import ScoringPool`` is part of the plugin authors' API and keeps working.
"""

from r1zero.scoring.pool import *  # noqa: F401,F403
