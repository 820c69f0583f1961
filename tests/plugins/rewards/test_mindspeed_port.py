"""Porting MindSpeed-RL (issue 14 item 7): ``base_acc``'s mindspeed mode extracts the answer
exactly as MindSpeed-RL does, and the ``math_verify_reward`` scorer its newer configs name."""

from __future__ import annotations

import json
import pickle
import random
from importlib.metadata import entry_points

import pytest

from r1zero.plugins.rewards.answer_format import last_boxed_mindspeed
from r1zero.plugins.rewards.base_acc import BaseAccScorer
from r1zero.plugins.rewards.math_verify_reward import (
    MathVerifyRewardScorer, math_verify_equal, register_rewards,
)

MS = BaseAccScorer().configure(format_mode="mindspeed")
MV = MathVerifyRewardScorer()


@pytest.mark.parametrize("response,answer", [
    ("<answer>\\boxed{42}</answer>", "42"),
    ("\\boxed{1} then \\boxed{ 2 }", "2"),                    # the last one, stripped
    ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
    ("\\boxed{\\{1,2\\}}", "\\{1,2\\}"),                       # \{ and \} count as braces
    ("\\boxed{\\left\\{ x \\right.} and more", "None"),        # so this box is never closed
    ("\\boxed{\\left\\{ x \\right.}}", "\\left\\{ x \\right.}"),
    ("\\boxed{42", "None"),                                     # unclosed last box
    ("\\boxed{7} \\boxed{8", "None"),                           # the last box decides
    ("no box at all", "None"),
    ("\\boxed {7}", "None"),                                    # needs the literal "\boxed{"
    ("\\boxed{}", ""),
    ("\\boxed{\\boxed{3}}", "3"),
])
def test_mindspeed_extraction(response, answer):
    assert last_boxed_mindspeed(response) == answer


def _reference(text: str) -> str:
    """MindSpeed-RL's extraction restated: raw brace depth after the last literal \\boxed{."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return "None"
    depth, body = 0, text[start + len("\\boxed{"):]
    for i, ch in enumerate(body):
        depth += (ch == "{") - (ch == "}")
        if depth == -1:
            return body[:i].strip()
    return "None"


def test_mindspeed_extraction_matches_the_rule_on_random_strings():
    pieces = ["\\boxed{", "\\boxed {", "{", "}", "\\{", "\\}", "x", " ", "\\", "\\boxed", "12"]
    rng = random.Random(11)
    for _ in range(5000):
        s = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 12)))
        assert last_boxed_mindspeed(s) == _reference(s), s


def test_mindspeed_mode_scores_the_extracted_answer():
    unclosed_last = "<think>a</think><answer>\\boxed{7} or \\boxed{7</answer>"
    out = MS.score(unclosed_last, "7", {})
    assert out == {"reward": 0.0, "format": 1.0, "accuracy": 0.0}     # "None" is not 7
    assert MS.score(unclosed_last, "None", {})["accuracy"] == 1.0    # as in MindSpeed-RL
    escaped = "<think>a</think><answer>\\boxed{\\{1,2\\}}</answer>"
    assert MS.score(escaped, "\\{2,1\\}", {})["reward"] == 1.0
    strict = BaseAccScorer()                                           # strict mode unchanged
    assert strict.score(unclosed_last, "7", {})["accuracy"] == 1.0


def test_math_verify_reward_is_an_entry_point_and_registers():
    eps = {ep.name: ep.value for ep in entry_points(group="r1zero")}
    assert eps["math_verify_reward"] == "r1zero.plugins.rewards.math_verify_reward"
    got = []
    register_rewards(register=got.append)
    assert [s.name for s in got] == ["math_verify_reward"]
    assert got[0].components == ("format", "accuracy")


def wrap(answer: str) -> str:
    return f"<think>I add.</think><answer>The answer is \\boxed{{{answer}}}</answer>"


@pytest.mark.parametrize("response,gold,expected", [
    (wrap("\\frac{1}{2}"), "0.5", (1.0, 1.0, 1.0)),
    (wrap("\\dfrac{6}{8}"), "\\frac34", (1.0, 1.0, 1.0)),
    (wrap("x = 3"), "3", (1.0, 1.0, 1.0)),
    (wrap("4"), "5", (0.0, 1.0, 0.0)),
    (wrap("5") + "\n", "5", (0.0, 0.0, 1.0)),                    # fullmatch: no trailing text
    ("<think>a</think><answer>5</answer>", "5", (0.0, 0.0, 0.0)),  # no box, no answer
    (wrap("(lambda: 5)()"), "5", (0.0, 1.0, 0.0)),               # code is never a number
    (wrap("\\binom{1000000000}{500000000}"), "5", (0.0, 1.0, 0.0)),
])
def test_math_verify_reward_scores(response, gold, expected):
    out = MV.score(response, gold, {})
    assert (out["reward"], out["format"], out["accuracy"]) == expected


def test_math_verify_reward_options():
    loose = MV.configure(format_weight=0.1, accuracy_requires_format=False, verify_budget_s=2)
    assert loose.score(wrap("5") + "\n", "5", {})["reward"] == pytest.approx(1.0)
    assert loose.score(wrap("5"), "5", {})["reward"] == pytest.approx(1.1)
    assert pickle.loads(pickle.dumps(loose)) == loose
    with pytest.raises(ValueError, match="unknown option 'format_mode'"):
        MV.configure(format_mode="strict")
    for bad in (0, -1, float("inf"), float("nan"), True, "1"):
        with pytest.raises(ValueError, match="verify_budget_s"):
            MV.configure(verify_budget_s=bad)
        with pytest.raises(ValueError, match="verify_budget_s"):
            BaseAccScorer().configure(verify_budget_s=bad)


def test_math_verify_equal_is_math_verify_alone():
    assert math_verify_equal("\\sqrt{8}", "2\\sqrt{2}")
    assert not math_verify_equal("\\sqrt{8}", "3")
    assert not math_verify_equal("10^{10^{10^{10}}}", "1")               # bounded first


def test_math_verify_reward_through_the_real_pool(tmp_path, capsys):
    from r1zero.cli.score import run_score
    from r1zero.host.manager import PluginHost

    rows = [{"response": wrap("\\frac{1}{2}"), "gold": "0.5"},
            {"response": wrap("3"), "gold": "4"},
            {"response": wrap("9**9**9**9"), "gold": "1"}]
    path = tmp_path / "s.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    assert run_score(path, ["math_verify_reward"], {}, workers=1, host=PluginHost().load()) == 0
    out = capsys.readouterr().out
    assert "row 1: reward=1" in out and "row 2: reward=0" in out and "row 3: reward=0" in out
    assert "3 rows scored by math_verify_reward" in out
