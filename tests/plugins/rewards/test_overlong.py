"""``overlong_penalty``: DAPO's soft overlong punishment by the response's token count, which
the trainer passes as ``extra["response_tokens"]``; through the real scoring pool."""

from __future__ import annotations

import pytest

from r1zero.host.errors import ConfigError
from r1zero.host.manager import PluginHost
from r1zero.host.registry import get_reward
from r1zero.scoring.pool import ScoringPool


def test_penalty_by_token_count_through_the_pool():
    scorer = get_reward("overlong_penalty", {"max_length": 10, "buffer": 4}, host=PluginHost().load())
    # safe to 6 tokens; 8 tokens: (6 - 8) / 4 = -.5 ; 11 tokens: over the limit, -1
    with ScoringPool([(scorer, 1.0)], workers=1) as pool:
        batch = pool.score(["a", "b", "c", "d"], [""] * 4,
                           [{"response_tokens": n} for n in (6, 8, 11)] + [{}])
    assert batch.rewards[:3] == [0.0, -0.5, -1.0]
    assert batch.components["overlong_penalty/overlong"][:3] == [0.0, 0.0, 1.0]
    assert batch.rewards[3] == 0.0 and "response_tokens" in batch.errors[0]   # no count: an error


def test_bad_options_name_the_key():
    host = PluginHost().load()
    with pytest.raises(ConfigError, match=r"rewards.overlong_penalty.options.*buffer 9 exceeds"):
        get_reward("overlong_penalty", {"max_length": 8, "buffer": 9}, host=host)
    with pytest.raises(ConfigError, match=r"max_length must be a whole number"):
        get_reward("overlong_penalty", {"max_length": 0}, host=host)
