"""Issue 21 item 7: a letter after a function or a term is a variable, not a unit to drop.

math-verify's normalisation drops a trailing unit word -- its list includes single letters
and letter pairs -- so, before r1zero guarded it, ``\\sin t`` scored 1 against ``\\sin s``,
``x + t`` against ``x + m`` and ``2t`` against ``2s``, while ``\\sin t`` scored 0 against
``\\sin(t)``. Both math-verify based scorers are checked, as a policy would be rewarded.
"""

from __future__ import annotations

import pytest

from r1zero.plugins.rewards.base_acc import BaseAccScorer
from r1zero.plugins.rewards.math_letters import keeps_variables, letters, protect_letters
from r1zero.plugins.rewards.math_verify_reward import MathVerifyRewardScorer

SCORERS = [BaseAccScorer(), MathVerifyRewardScorer()]

WRONG = [
    ("\\sin t", "\\sin s"), ("x + t", "x + m"),                       # the two
    ("\\cos t", "\\cos s"), ("\\tan h", "\\tan g"), ("\\ln t", "\\ln m"), ("\\log t", "\\log s"),
    ("\\sin^2 t", "\\sin^2 s"), ("\\arcsin t", "\\arcsin s"), ("\\sec t", "\\sec m"),
    ("y - d", "y - c"), ("x t", "x m"), ("a + bc", "a + st"), ("2t", "2s"), ("3t", "3"),
    ("\\frac{1}{2} t", "\\frac{1}{2} s"), ("x^2 + o", "x^2 + l"), ("\\sqrt{2} t", "\\sqrt{2} s"),
    ("x = \\sin t", "x = \\sin s"), ("f(x) + h", "f(x) + g"),
]
EQUAL = [
    ("\\sin t", "\\sin(t)"), ("\\cos s", "\\cos(s)"), ("\\ln m", "\\ln(m)"), ("\\tan t", "\\tan t"),
    ("x + t", "t + x"), ("2t", "2 \\cdot t"), ("a + bc", "cb + a"), ("\\frac{1}{2} t", "\\frac{t}{2}"),
    # units that really are units stay dropped
    ("5\\text{ cm}", "5"), ("5 cm", "5"), ("10 meters", "10"), ("12 m", "12"), ("2.5 s", "2.5"),
    ("\\frac{1}{3}\\text{ m}", "\\frac{1}{3}"), ("3.5 \\mathrm{kg}", "3.5"), ("15\\mbox{ cm}^2", "15"),
    ("7\\,\\text{h}", "7"), ("40 km", "40"),
]


def wrap(answer: str) -> str:
    return f"<think>t</think><answer>\\boxed{{{answer}}}</answer>"


@pytest.mark.parametrize("scorer", SCORERS, ids=lambda s: s.name)
@pytest.mark.parametrize("pred,gold", WRONG)
def test_a_dropped_letter_does_not_make_wrong_answers_equal(scorer, pred, gold):
    assert scorer.score(wrap(pred), gold, {})["accuracy"] == 0.0
    assert scorer.score(wrap(gold), pred, {})["accuracy"] == 0.0


@pytest.mark.parametrize("scorer", SCORERS, ids=lambda s: s.name)
@pytest.mark.parametrize("pred,gold", EQUAL)
def test_a_kept_letter_and_a_real_unit_still_score(scorer, pred, gold):
    assert scorer.score(wrap(pred), gold, {})["accuracy"] == 1.0
    assert scorer.score(wrap(gold), pred, {})["accuracy"] == 1.0


@pytest.mark.parametrize("text,protected", [
    ("\\sin t", "\\sin {t}"), ("x + t", "x + {t}"), ("2t", "2{t}"), ("a + bc", "a + {bc}"),
    ("5 m", "5 m"), ("5cm", "5cm"), ("10 meters", "10 meters"), ("5\\text{ cm}", "5\\text{ cm}"),
    ("\\pi", "\\pi"), ("x+t", "x+t"), ("\\frac{1}{2} t", "\\frac{1}{2} {t}"),
])
def test_protect_braces_variables_only(text, protected):
    assert protect_letters(text) == protected


def test_the_structural_guard_alone_refuses_a_parse_that_lost_the_variables():
    # what math-verify makes of "\sin t" and "\sin s" unprotected: the string "\sin" twice
    assert letters("\\sin t + x_1 \\text{ cm}") == {"t", "x"}
    assert not keeps_variables("\\sin t", ["\\sin"], "\\sin s", ["\\sin"])
    assert keeps_variables("\\sin t", ["\\sin"], "\\sin(t)", ["\\sin(t)"])   # same letters
    assert keeps_variables("5 cm", ["5"], "5", ["5"])                          # a unit, dropped
