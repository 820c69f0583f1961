"""Run after `pip install -e .`:  python -m pytest -q"""

import pickle

import pytest

from r1zero.manager import PluginHost
from r1zero.registry import get_reward
from r1zero.scoring import ScoringPool
from r1zero_length_reward import LengthPenalty


@pytest.fixture
def host():
    return PluginHost().load()


def test_registered_by_the_installed_distribution(host):
    (reg,) = [r for r in host.items("rewards") if r.name == "length_penalty"]
    assert reg.plugin.distribution == "r1zero-length-reward" and reg.plugin.error is None


def test_soft_overlong_penalty_by_hand():
    s = LengthPenalty(max_length=10, buffer=4, factor=2.0)
    # safe zone ends at 10 - 4 = 6 chars
    assert s.score("x" * 6, "", {}) == {"reward": 0.0, "length": 6.0, "overlong": 0.0}
    # 8 chars: p = (6 - 8) / 4 = -0.5 ; x factor 2 = -1.0
    assert s.score("x" * 8, "", {})["reward"] == pytest.approx(-1.0)
    # 10 chars: p = (6 - 10) / 4 = -1 (still within budget) ; 11 chars: over budget -> -1
    assert s.score("x" * 10, "", {})["overlong"] == 0.0
    assert s.score("x" * 11, "", {}) == {"reward": -2.0, "length": 11.0, "overlong": 1.0}


def test_words_unit_and_hard_cutoff():
    s = LengthPenalty(max_length=3, buffer=0, unit="words")
    assert s.score("a b c", "", {})["reward"] == 0.0
    assert s.score("a b c d", "", {})["reward"] == -1.0


def test_options_through_the_registry(host):
    s = get_reward("length_penalty", {"max_length": 8, "buffer": 2}, host=host)
    assert (s.max_length, s.buffer, s.unit) == (8, 2, "chars")
    with pytest.raises(Exception, match=r"rewards.length_penalty.options.*unknown option.*'budget'"):
        get_reward("length_penalty", {"budget": 8}, host=host)
    with pytest.raises(Exception, match="buffer must be an integer in"):
        get_reward("length_penalty", {"max_length": 8, "buffer": 9}, host=host)


def test_picklable_and_safe_on_hostile_text():
    s = pickle.loads(pickle.dumps(LengthPenalty(max_length=5, buffer=1)))
    for text in ["", "\x00" * 50, "\\boxed{" * 1000, "\ud800", None]:
        out = s.score(text, "1", {})
        assert set(out) == {"reward", "length", "overlong"} and -1.0 <= out["reward"] <= 0.0


def test_combines_with_base_acc_in_the_scoring_pool(host):
    scorers = [(get_reward("base_acc", host=host), 1.0),
               (get_reward("length_penalty", {"max_length": 40, "buffer": 10}, host=host), 0.5)]
    pool = ScoringPool(scorers, workers=1, timeout_s=5.0)
    try:
        # 7 + 10 + 8 + 8 + 10 + 9 = 52 chars > max_length 40 -> penalty -1
        right = "<think>7 + 5 = 12</think><answer>\\boxed{12}</answer>"
        batch = pool.score([right], ["12"], [{}])
    finally:
        pool.close()
    # base_acc 1.0 x 1.0 + length_penalty -1.0 x 0.5 = 0.5
    assert batch.rewards == [pytest.approx(0.5)]
    assert batch.components["length_penalty/length"] == [52.0]
