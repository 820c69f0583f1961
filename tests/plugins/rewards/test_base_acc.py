"""base_acc: format rule, accuracy, weights and options, on cases written here (not copied
from the benchmark's responses), plus hostile answers scored in this process."""

from __future__ import annotations

import time

import pytest

from r1zero.plugins.rewards.base_acc import BaseAccScorer, register_rewards


def wrap(answer: str, think: str = "I add 3 and 4.") -> str:
    return f"<think>{think}</think><answer>So we get \\boxed{{{answer}}}.</answer>"


S = BaseAccScorer()


@pytest.mark.parametrize("response,ok", [
    (wrap("7"), True),
    ("  \n" + wrap("7") + "\n ", True),                                  # surrounding space
    ("<think></think>\n<answer>\\boxed {7}</answer>", True),             # space before {
    ("<think>a</think> aside <answer>\\boxed{7}</answer>", True),        # text between blocks
    ("<think>a</think><answer>\\boxed{}</answer>", True),                # empty box: format ok
    ("<think>x \\boxed{ oops</think><answer>\\boxed{7}</answer>", True), # junk in think only
    ("<think>a</think><answer>7</answer>", False),                       # no box
    ("<think>a</think><answer>\\boxed 7</answer>", False),               # box without braces
    ("<think>a</think><answer>\\fbox{7}</answer>", False),
    ("<think>a</think><answer>\\boxed{\\frac{1}{2}</answer>", False),    # unbalanced
    ("<think>\\boxed{7}</think><answer>seven</answer>", False),          # box only in think
    ("<think>a</think>\\boxed{7}", False),                               # no answer block
    ("<answer>\\boxed{7}</answer>", False),                              # no think block
    ("x<think>a</think><answer>\\boxed{7}</answer>", False),             # text before think
    (wrap("7") + " bye", False),                                         # text after answer
    (wrap("7") + wrap("7"), False),                                      # tags twice
    ("<think>a</think><answer>\\boxed{7}</answer></answer>", False),
    ("<think>see </think> here</think><answer>\\boxed{7}</answer>", False),
    ("<answer>\\boxed{7}</answer><think>a</think>", False),              # wrong order
    ("<THINK>a</THINK><ANSWER>\\boxed{7}</ANSWER>", False),
    ("", False),
])
def test_strict_format(response, ok):
    assert S.score(response, "7", {})["format"] == float(ok)


@pytest.mark.parametrize("response,ok", [
    (wrap("7"), True),
    ("<think>a</think>x<think>b</think><answer>\\boxed{7}</answer>", True),  # regex is greedy
    ("<think>a</think><answer>\\boxed{7</answer>", False),                 # no "}" after it
    ("<think>a</think><answer>\\boxed{7 and }</answer>", True),
    ("<think>a</think><answer>\\boxed {7}</answer>", False),                 # needs "\boxed{"
    (wrap("7") + "\n", False),                                               # fullmatch, no strip
    ("\n" + wrap("7"), False),
])
def test_mindspeed_format(response, ok):
    assert S.configure(format_mode="mindspeed").score(response, "7", {})["format"] == float(ok)


def test_mindspeed_format_matches_the_regex_on_random_strings():
    import random
    import re
    pattern = re.compile(r"<think>.*</think>.*<answer>.*\\boxed\{.*\}.*</answer>", re.DOTALL)
    pieces = ["<think>", "</think>", "<answer>", "</answer>", "\\boxed{", "}", "{", "x", "\n"]
    rng = random.Random(7)
    from r1zero.plugins.rewards.answer_format import mindspeed_format_ok
    for _ in range(3000):
        s = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 12)))
        assert mindspeed_format_ok(s) == bool(pattern.fullmatch(s)), s


@pytest.mark.parametrize("pred,gold,equal", [
    ("42", "42", True), ("42.0", "42", True), ("+42", "42", True), ("41", "42", False),
    ("\\frac{6}{8}", "\\frac34", True), ("0.75", "3/4", True), ("\\dfrac{3}{5}", "0.6", True),
    ("\\frac{3}{5}", "0.61", False), ("-\\frac{1}{3}", "\\frac{-1}{3}", True),
    ("2\\sqrt{2}", "\\sqrt{8}", True), ("\\sqrt{8}", "3", False),
    ("\\frac{\\pi}{6}", "\\pi/6", True), ("\\frac{\\pi}{6}", "\\frac{\\pi}{3}", False),
    ("x^2-2x+1", "(x-1)^2", True), ("x^2-2x+1", "(x+1)^2", False),
    ("k = 9", "9", True), ("y=\\frac{2}{3}", "\\frac23", True),
    ("5", "u+v=5", False),                                   # a value does not answer an equation
    ("3,000,000", "3000000", True), ("30 \\%", "30", True), ("90^{\\circ}", "90", True),
    ("\\text{(C)}", "C", True), ("\\textbf{yes}", "yes", True), ("\\mathbf{C}", "C", True),
    ("F'", "F", False),
    ("(2,5)", "\\left( 2, 5\\right)", True), ("(2,5)", "(5,2)", False),
    ("[1,4)", "1 \\le t < 4", True), ("(1,4)", "[1,4)", False),
    ("(-\\infty, 0) \\cup (2, \\infty)", "(2,\\infty)\\cup(-\\infty,0)", True),
    ("y \\geq 3", "[3, \\infty)", True), ("y > 3", "[3, \\infty)", False),
    ("3x+6y=9", "x+2y=3", True), ("x+2y=4", "x+2y=3", False), ("x^2+y^2=9", "2x^2+2y^2=18", True),
    ("\\begin{pmatrix}1&0\\\\0&2\\end{pmatrix}", "\\begin{bmatrix}1 & 0 \\\\ 0 & 2\\end{bmatrix}", True),
    ("\\begin{pmatrix}1&0\\\\0&3\\end{pmatrix}", "\\begin{bmatrix}1 & 0 \\\\ 0 & 2\\end{bmatrix}", False),
    ("(1,3),(3,1)", "(3,1),(1,3)", True), ("(1,3),(3,2)", "(3,1),(1,3)", False),
    ("b_2 = 7, b_1 = 4", "b_1=4, b_2=7", True),
    ("7\\frac{1}{4}", "7.25", True), ("\\cos(\\pi/3)", "\\frac{1}{2}", True),
    ("\\sin^2(t)+\\cos^2(t)", "1", None),   # different variables: left to math-verify
    ("½", "0.5", True), ("−6", "-6", True), ("３", "3", True), ("2√5", "\\sqrt{20}", True),
    ("", "5", False),
])
def test_accuracy(pred, gold, equal):
    if equal is None:        # left to math-verify: only check it is a clean 0/1
        assert S.score(wrap(pred), gold, {})["accuracy"] in (0.0, 1.0)
        return
    out = S.score(wrap(pred), gold, {})
    assert out["accuracy"] == float(equal), (pred, gold, out)


def test_accuracy_uses_the_last_box_of_the_answer_block():
    r = "<think>\\boxed{5}</think><answer>first \\boxed{4}, finally \\boxed{6}</answer>"
    assert S.score(r, "6", {})["accuracy"] == 1.0
    assert S.score(r, "5", {})["accuracy"] == 0.0
    assert S.score(r, "4", {})["accuracy"] == 0.0


def test_ground_truth_may_be_boxed_or_in_dollars():
    assert S.score(wrap("12"), "\\boxed{12}", {})["reward"] == 1.0
    assert S.score(wrap("12"), "$12$", {})["reward"] == 1.0


def test_reward_combination():
    good, bad_format = wrap("8"), "<think>a</think><answer>\\boxed{8}"
    # defaults: 1 iff format AND accuracy; accuracy is reported regardless of format
    assert S.score(good, "8", {}) == {"reward": 1.0, "format": 1.0, "accuracy": 1.0}
    assert S.score(bad_format, "8", {}) == {"reward": 0.0, "format": 0.0, "accuracy": 1.0}
    assert S.score(good, "9", {}) == {"reward": 0.0, "format": 1.0, "accuracy": 0.0}
    # 0.1*format + 1.0*accuracy (accuracy counted without format)
    loose = S.configure(format_weight=0.1, accuracy_requires_format=False)
    assert loose.score(good, "8", {})["reward"] == pytest.approx(1.1)
    assert loose.score(good, "9", {})["reward"] == pytest.approx(0.1)
    assert loose.score(bad_format, "8", {})["reward"] == pytest.approx(1.0)


def test_configure_returns_a_new_scorer_and_rejects_unknown_options():
    m = S.configure(format_mode="mindspeed", accuracy_weight=2.0)
    assert (m.format_mode, m.accuracy_weight, S.format_mode) == ("mindspeed", 2.0, "strict")
    with pytest.raises(ValueError, match="unknown option 'format_weigth'.*format_weight"):
        S.configure(format_weigth=1.0)
    with pytest.raises(ValueError, match="format_mode"):
        S.configure(format_mode="loose")
    with pytest.raises(ValueError, match="accuracy_weight"):
        S.configure(accuracy_weight=float("nan"))


def test_register_rewards_registers_base_acc():
    got = []
    register_rewards(register=got.append)
    assert [s.name for s in got] == ["base_acc"] and got[0].components == ("format", "accuracy")


def test_scorer_pickles():
    import pickle
    m = S.configure(format_mode="mindspeed")
    assert pickle.loads(pickle.dumps(m)) == m


HOSTILE = [
    "\\boxed{__import__('os').system('touch {marker}')}",
    "9**9**9**9", "10^{10^{10^{10}}}", "2^{2^{2^{2^{2^{2}}}}}", "(" * 5000 + "1" + ")" * 5000,
    "{" * 3000 + "}" * 3000, "\\frac{" * 2000 + "1" + "}{2}" * 2000, "1\x002\x00", "7\ud800",
    "\ud83d" * 10, "99999999999!", "(10^{10})!", "1" * 5000, "\\sqrt{" * 500 + "2" + "}" * 500,
    "x^{99999999}", "e^{e^{e^{e^{10}}}}", "\\sum_{k=1}^{10^{12}} k", "a" * 50_000,
]


@pytest.mark.parametrize("answer", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_answers_are_fast_and_inert(answer, tmp_path):
    marker = tmp_path / "pwned"
    answer = answer.replace("{marker}", str(marker))
    t = time.perf_counter()
    for gold in ("1", answer):
        out = S.score(wrap(answer), gold, {})
        assert set(out) == {"reward", "format", "accuracy"}
        assert all(v in (0.0, 1.0) for v in out.values())
    assert time.perf_counter() - t < 2.0, "hostile answer took too long in-process"
    assert not marker.exists()


def test_huge_response_is_linear():
    big = "<think>" + "</think><answer>\\boxed{" * 20_000 + "</answer>"
    t = time.perf_counter()
    S.score(big, "1", {})
    S.configure(format_mode="mindspeed").score(big, "1", {})
    S.score("<think>" + "x" * 200_000 + "</think><answer>\\boxed{1}</answer>", "1", {})
    assert time.perf_counter() - t < 2.0
