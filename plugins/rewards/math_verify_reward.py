"""``math_verify_reward``: the scorer MindSpeed-RL's newer R1-Zero configs name.

    reward = format_weight * format
           + accuracy_weight * (accuracy if (format or not accuracy_requires_format) else 0)

With the defaults (0.0, 1.0, True), 1.0 iff MindSpeed-RL's format regex holds AND
math-verify judges the answer equal to the ground truth — MindSpeed-RL's
``math_verify_reward``. Both components are returned.

- ``format`` (0/1): MindSpeed-RL's regex
  ``<think>.*</think>.*<answer>.*\\\\boxed\\{.*\\}.*</answer>`` (full match), decided by a
  linear scan (``answer_format.mindspeed_format_ok``), as in ``base_acc``'s mindspeed mode.
- ``accuracy`` (0/1): math-verify's verdict alone (no fast path of our own) on the content
  of the response's last ``\\\\boxed{}`` against the ground truth — the answer math-verify
  extracts from a response of this format, since it prefers the rightmost boxed match.

Where it differs from MindSpeed-RL, for safety and bounded cost: math-verify parses
LaTeX only (MindSpeed-RL also lets it read plain expressions with sympy's ``parse_expr``,
which evaluates Python); an answer over a bound of ``math_bounds`` (huge factorials,
binomials, powers, nesting, length) or that looks like code (``code_like``) is compared as
a string only; math-verify gets ``verify_budget_s`` seconds per answer (over budget
counts as wrong) instead of its one-second signal timeouts; a trailing letter is a
variable, not a unit math-verify may drop (``\\sin t`` is not ``\\sin s``; ``math_letters``); MindSpeed-RL's ``"final answer
is …"`` phrase extraction, which math-verify ranks above a box, is not used.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, ClassVar, Mapping

import attrs
from math_verify import parse, verify

from r1zero.host.hookspecs import hookimpl
from r1zero.plugins.rewards.answer_format import last_boxed, mindspeed_format_ok
from r1zero.plugins.rewards.base_acc import check_options, combine, configure, gold_answer
from r1zero.plugins.rewards.budget import OverBudget, call_within
from r1zero.plugins.rewards.math_equiv import (
    LATEX_ONLY,
    VERIFY_BUDGET_S,
    for_parser,
    prepare,
    prepare_prediction,
)
from r1zero.plugins.rewards.math_letters import keeps_variables, protect_letters


@lru_cache(maxsize=1024)
def _parse_gold(text: str) -> list[Any]:
    return parse(for_parser(text), extraction_config=LATEX_ONLY, parsing_timeout=None)


def _verify(pred: str, gold: str) -> bool:
    pred, gold = protect_letters(pred), protect_letters(gold)
    gold_parsed = _parse_gold(gold)
    pred_parsed = parse(for_parser(pred), extraction_config=LATEX_ONLY, parsing_timeout=None)
    return bool(gold_parsed and pred_parsed
                and keeps_variables(pred, pred_parsed, gold, gold_parsed)
                and verify(gold_parsed, pred_parsed, timeout_seconds=None))


def math_verify_equal(pred: str, gold: str, budget_s: float = VERIFY_BUDGET_S) -> bool:
    """math-verify's verdict on ``pred`` vs ``gold``, bounded (module doc)."""
    g = prepare(gold)
    p = prepare_prediction(pred, g)
    if p.key == g.key:
        return bool(p.key)
    if p.unsafe or g.unsafe:
        return False
    try:
        return call_within(budget_s, _verify, p.text, g.text)
    except OverBudget:
        return False


@attrs.frozen
class MathVerifyRewardScorer:
    format_weight: float = 0.0
    accuracy_weight: float = 1.0
    accuracy_requires_format: bool = True
    verify_budget_s: float = VERIFY_BUDGET_S

    name: ClassVar[str] = "math_verify_reward"
    components: ClassVar[tuple[str, ...]] = ("format", "accuracy")
    in_process: ClassVar[bool] = False      # math-verify may take its budget: run in the pool
    in_process_reason: ClassVar[str] = ""
    preload_modules: ClassVar[tuple[str, ...]] = ("r1zero.plugins.rewards.preload",)

    def __attrs_post_init__(self) -> None:
        check_options(self)

    def configure(self, **options: Any) -> "MathVerifyRewardScorer":
        """A new scorer with ``options`` changed; an unknown option is a ValueError."""
        return configure(self, **options)

    def score(self, response: str, ground_truth: str,
              extra: Mapping[str, Any] | None = None) -> dict[str, float]:
        response = str(response)
        fmt = mindspeed_format_ok(response)
        answer = last_boxed(response)
        acc = bool(answer) and math_verify_equal(answer, gold_answer(ground_truth),
                                                 self.verify_budget_s)
        return combine(self, fmt, acc)


@hookimpl
def register_rewards(register):
    register(MathVerifyRewardScorer())
