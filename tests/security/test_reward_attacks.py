"""Issue 13 items 13 and 14: hostile answers against the reward scorers, in this process.

- Bounded cost: combinatorial and special functions with huge arguments, in every spelling,
  are refused before any parser runs (``math_bounds``) and score fast; the parser itself runs
  under a CPU-time budget (``budget``). Every case must come back here, not via a pool kill.
- Code-like text (lambda, calls, attribute access, comprehensions, quoted literals) is never
  judged equal to a number, even where math-verify alone would say it is.
"""

from __future__ import annotations

import signal
import time

import pytest

from r1zero.plugins.rewards.base_acc import BaseAccScorer
from r1zero.plugins.rewards.budget import OverBudget, call_within, can_bound
from r1zero.plugins.rewards.code_like import code_like_reason
from r1zero.plugins.rewards.math_bounds import explosion_reason
from r1zero.plugins.rewards.math_equiv import answers_equal, prepare, prepare_prediction
from r1zero.plugins.rewards.math_verify_reward import MathVerifyRewardScorer

N, K = "1000000000", "500000000"
HUGE = [
    # binomials
    f"\\binom{{{N}}}{{{K}}}", f"\\dbinom{{{N}}}{{{K}}}", f"\\tbinom{{{N}}}{{{K}}}",
    f"{{{N} \\choose {K}}}", f"{N} \\choose {K}", "\\binom{10^{10}}{10^{5}}",
    "\\binom{2^{40}}{2^{39}}", "\\binom{x}{1000000000}", f"\\binom{{\\left({N}\\right)}}{{{K}}}",
    f"\\binom{{1000000000+n}}{{{K}}}", f"binomial({N},{K})", "\\binom{100000}{50000}",
    # factorials
    "1000000000!", "(10^9)!", "10^9!", "10^{9}!", "2^{30}!", "{10^9}!", "\\left(10^9\\right)!",
    "99999!", "10!!!!", "(1000000000x)!", "factorial(1000000000)", "\\frac{1000000000!}{999999999!}",
    # Gamma and exp
    "\\Gamma(1000000000)", "\\Gamma(10^{9})", "\\Gamma\\left(1000000000\\right)", "\\Gamma{1000000000}",
    "\\Gamma 1000000000", "\\operatorname{Gamma}(1000000000)", "\\mathrm{\\Gamma}(10^9)",
    "gamma(1000000000)", "\\exp(\\exp(\\exp(100)))", "\\Gamma(\\Gamma(10))", "(\\Gamma(5))!",
    # products and sums
    "\\prod_{k=1}^{1000000000} k", "\\prod_{k=1}^{10^9} k", "\\prod\\limits_{k=1}^{100000} k",
    "\\prod^{100000}_{k=1} k", "\\prod_{i=1}^{300}\\prod_{j=1}^{300} (i+j)",
    "\\sum_{k=1}^{100000} k^k", "\\sum_{k=1}^{1000000} \\frac{1}{k}",
    # exponents written as expressions, big numeric powers, big polynomial powers
    "2^{10^4\\cdot 10^4}", "2^{9999 \\times 9999}", "2^{\\frac{1000000000}{1}}", "2^{1000000000/1}",
    "99999999^{9999}", "(x+1)^{1000}", "(x+y+z)^{60}", "9**9**9**9", "10^{10^{10^{10}}}",
    "\\begin{pmatrix}1&1\\\\1&0\\end{pmatrix}^{1000000000}",
]
SMALL = ["\\binom{10}{3}", "\\dbinom{2n}{n}", "{n \\choose 2}", "5!", "(n+1)!", "\\Gamma(\\frac{1}{2})",
         "\\Gamma^2(x)", "\\sum_{k=1}^{n} k^2", "\\sum_{n=1}^{\\infty} \\frac{1}{n^2}",
         "\\prod_{k=1}^{10} k", "2^{10}", "(1+x)^{12}", "e^{-x^2}", "7^{2024}", "\\binom{2024}{1012}",
         "x^{100}", "\\exp(-x)", "2^{n+1}", "\\sqrt[3]{x}"]

S = BaseAccScorer()
M = MathVerifyRewardScorer()


def wrap(answer: str) -> str:
    return f"<think>t</think><answer>\\boxed{{{answer}}}</answer>"


@pytest.mark.parametrize("answer", HUGE)
def test_explosive_answers_are_refused_by_bounds(answer):
    assert explosion_reason(prepare(answer).key) or prepare(answer).unsafe


@pytest.mark.parametrize("answer", SMALL)
def test_ordinary_answers_pass_the_bounds(answer):
    assert prepare(answer).unsafe is None, prepare(answer).unsafe


@pytest.mark.parametrize("answer", HUGE, ids=range(len(HUGE)))
def test_explosive_answers_score_fast_in_process(answer):
    cpu, wall = time.process_time(), time.perf_counter()
    for scorer in (S, M):
        assert scorer.score(wrap(answer), "42", {})["accuracy"] == 0.0
        assert scorer.score(wrap(answer), answer, {})["accuracy"] == 1.0   # same string
    assert time.process_time() - cpu < 0.2
    assert time.perf_counter() - wall < 5.0          # the machine may be shared


@pytest.mark.parametrize("pred,gold", [
    ("\\binom{5}{2}", "10"), ("\\dbinom{6}{3}", "20"), ("5!", "120"), ("\\Gamma(5)", "24"),
])
def test_small_combinatorics_still_compare(pred, gold):
    assert answers_equal(pred, gold)
    assert not answers_equal(pred, str(int(gold) + 1))


def test_parser_time_is_budgeted():
    """A long but bounded polynomial against a number costs math-verify seconds; the budget
    (0.2 s of CPU here) ends it with a wrong verdict, in this process."""
    slow = "+".join(f"x^{{{i}}}" for i in range(40))
    assert prepare(slow).unsafe is None
    cpu = time.process_time()
    assert not answers_equal(slow, "42", budget_s=0.2)
    assert time.process_time() - cpu < 0.6


@pytest.mark.skipif(not can_bound(), reason="needs setitimer in the main thread")
def test_budget_restores_timers_and_handlers_and_survives_swallowing():
    def spin_swallowing(times: int) -> None:
        caught = 0
        while True:
            try:
                while True:
                    pass
            except OverBudget:
                caught += 1
                if caught >= times:
                    raise

    mine = []
    old = signal.signal(signal.SIGALRM, lambda *a: mine.append(1))
    signal.setitimer(signal.ITIMER_REAL, 30.0)                 # the caller's own alarm
    try:
        with pytest.raises(OverBudget):
            call_within(0.05, spin_swallowing, 3)              # swallowed twice, still ends
        assert call_within(0.05, sum, [1, 2]) == 3
        assert signal.getitimer(signal.ITIMER_PROF) == (0.0, 0.0)
        assert 20.0 < signal.getitimer(signal.ITIMER_REAL)[0] <= 30.0
        assert signal.getsignal(signal.SIGALRM) is not None and not mine
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


CODE = [
    ("(lambda: 42)()", "42"),           # math-verify 0.9 alone says equal
    ("42.real", "42"), ("(42).real", "42"), ("42()", "42"), ('"42"', "42"), ("'42'", "42"),
    ("__import__('math').floor(42.5)", "42"), ("math.floor(42.5)", "42"), ("int(42)", "42"),
    ("eval('42')", "42"), ("[42][0]", "42"), ("sum([40,2])", "42"), ("sum(i for i in range(10))", "45"),
    ("[x for x in [42]][0]", "42"), ("f(42)", "42"), ("C(7,2)", "21"), ("0x2a", "42"),
    ("pow(2,5)", "32"), ("np.sqrt(4)", "2"), ("x.real", "42"), ("lambda: 42", "42"),
]


@pytest.mark.parametrize("pred,gold", CODE)
def test_code_like_answers_never_equal_a_number(pred, gold):
    assert code_like_reason(prepare(pred).text), pred
    assert not answers_equal(pred, gold)
    assert S.score(wrap(pred), gold, {})["reward"] == 0.0
    assert M.score(wrap(pred), gold, {})["reward"] == 0.0


@pytest.mark.parametrize("pred,gold", [
    ("f(3) = 9", "9"), ("P(A) = 0.5", "\\frac{1}{2}"), ("f(x) = x^2+1", "x^2+1"),
    ("\\sin(x)", "\\sin x"), ("3.5", "\\frac72"), (".5", "\\frac12"), ("(1,2)", "(1, 2)"),
    ("\\{1,2\\}", "\\{2,1\\}"), ("xy(x+y)", "x^2y+xy^2"), ("2(3)", "6"), ("\\sqrt[3]{8}", "2"),
    ("(1,2) \\cup (3,4)", "(3,4) \\cup (1,2)"), ("\\lambda", "\\lambda"), ("f'(x)", "f'(x)"),
    ("1, 2, \\ldots, n", "1,2,\\ldots,n"), ("2\\lambda+1", "1+2\\lambda"),
    ("x(3)", "3x"), ("(n+1)!", "(n+1) n!"), ("\\text{e.g. } 5", "\\text{e.g. } 5"),
])
def test_mathematics_is_not_code(pred, gold):
    assert prepare_prediction(pred, prepare(gold)).unsafe is None, pred
    assert answers_equal(pred, gold), (pred, gold)


def test_a_one_letter_call_is_code_only_against_a_number():
    assert code_like_reason("f(3)") and code_like_reason("C(10, 3)")
    assert code_like_reason("x(3)", against_number=False) is None
    assert prepare_prediction("f(3)", prepare("9")).unsafe                 # never 9
    assert prepare_prediction("f(3)", prepare("\\sqrt{2}")).unsafe        # a constant too
    assert prepare_prediction("f(3) = 9", prepare("9")).unsafe is None     # an answer 9
