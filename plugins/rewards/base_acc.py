"""``base_acc``: the R1-Zero rule reward — format and answer accuracy.

    reward = format_weight * format
           + accuracy_weight * (accuracy if (format or not accuracy_requires_format) else 0)

With the defaults (0.0, 1.0, True) this is MindSpeed-RL's ``base_acc``: 1.0 iff the format
holds AND the answer is right. Both components are returned, so logs show which one moved.

- ``format`` (0/1): ``format_mode: strict`` (default) is ``answer_format.strict_format_ok``
  (each tag once, in order, a balanced ``\\boxed{}`` in the answer); ``format_mode: mindspeed``
  is MindSpeed-RL's regex, exactly (``answer_format.mindspeed_format_ok``).
- ``accuracy`` (0/1), whatever the format verdict: the last ``\\boxed{…}`` of the answer
  block (strict) — or, in mindspeed mode, MindSpeed-RL's own extraction from the whole
  response (``answer_format.last_boxed_mindspeed``: raw brace counting, ``"None"`` when the
  last box is not closed) — equals the ground truth by ``math_equiv.answers_equal``:
  normalised strings and exact or numeric comparison first, math-verify for the rest
  within ``verify_budget_s`` seconds of CPU time (default 0.4; over budget counts as wrong). Nothing is
  evaluated as code; answers over a bound (length, nesting, towers, huge factorials,
  binomials, Gamma, sums, products) or that look like code are compared as strings only.

Configure through the config (``rewards.base_acc.options``), e.g.
``{format_mode: mindspeed}`` or ``{format_weight: 0.1, accuracy_requires_format: false}``.
MindSpeed-RL's own checker (mathruler's ``grade_answer``) is not used: it hands answer text
to sympy's ``parse_expr``, which evaluates Python. Verdicts may differ where the two checkers
disagree; the format rule and the extracted answer are MindSpeed-RL's exactly.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Mapping

import attrs

from r1zero.host.hookspecs import hookimpl
from r1zero.plugins.rewards.answer_format import (
    answer_region,
    last_boxed,
    last_boxed_mindspeed,
    mindspeed_format_ok,
    strict_format_ok,
)
from r1zero.plugins.rewards.math_equiv import VERIFY_BUDGET_S, answers_equal

FORMAT_MODES = ("strict", "mindspeed")
MAX_GROUND_TRUTH_CHARS = 20_000


def check_budget(scorer: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not (math.isfinite(value) and 0 < value <= 60):
        raise ValueError(f"{scorer}: verify_budget_s must be a number of seconds in (0, 60], "
                         f"got {value!r}")


def check_options(scorer: Any) -> None:
    """The options a format + accuracy scorer shares: finite weights, a boolean
    ``accuracy_requires_format`` and a ``verify_budget_s`` in (0, 60]."""
    for key in ("format_weight", "accuracy_weight"):
        value = getattr(scorer, key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value):
            raise ValueError(f"{scorer.name}: {key} must be a finite number, got {value!r}")
    check_budget(scorer.name, scorer.verify_budget_s)
    if not isinstance(scorer.accuracy_requires_format, bool):
        raise ValueError(f"{scorer.name}: accuracy_requires_format must be true or false, "
                         f"got {scorer.accuracy_requires_format!r}")


def configure(scorer: Any, **options: Any) -> Any:
    """A new scorer with ``options`` changed; an unknown option is a ValueError."""
    valid = [f.name for f in attrs.fields(type(scorer))]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(f"{scorer.name}: unknown option {unknown[0]!r}; valid options: "
                         f"{', '.join(valid)}")
    return attrs.evolve(scorer, **options)


def combine(scorer: Any, fmt: bool, acc: bool) -> dict[str, float]:
    """reward = format_weight * format + accuracy_weight * accuracy, where accuracy counts
    only with the format when ``accuracy_requires_format``."""
    counted = acc if (fmt or not scorer.accuracy_requires_format) else False
    reward = scorer.format_weight * fmt + scorer.accuracy_weight * counted
    return {"reward": float(reward), "format": float(fmt), "accuracy": float(acc)}


def gold_answer(ground_truth: str) -> str:
    """The gold answer: a ``\\boxed{}`` inside it unwrapped, surrounding ``$`` dropped."""
    gold = str(ground_truth)[:MAX_GROUND_TRUTH_CHARS].strip()
    boxed = last_boxed(gold)
    if boxed is not None:
        gold = boxed
    return gold.strip("$ \t\n")


@attrs.frozen
class BaseAccScorer:
    format_mode: str = "strict"
    format_weight: float = 0.0
    accuracy_weight: float = 1.0
    accuracy_requires_format: bool = True
    verify_budget_s: float = VERIFY_BUDGET_S

    name: ClassVar[str] = "base_acc"
    components: ClassVar[tuple[str, ...]] = ("format", "accuracy")
    in_process: ClassVar[bool] = False      # math-verify may take seconds: run in the pool
    in_process_reason: ClassVar[str] = ""
    # imported once by the pool's forkserver: workers (and their replacements) start warm
    preload_modules: ClassVar[tuple[str, ...]] = ("r1zero.plugins.rewards.preload",)

    def __attrs_post_init__(self) -> None:
        if self.format_mode not in FORMAT_MODES:
            raise ValueError(f"base_acc: format_mode must be one of {list(FORMAT_MODES)}, "
                             f"got {self.format_mode!r}")
        check_options(self)

    def configure(self, **options: Any) -> "BaseAccScorer":
        """A new scorer with ``options`` changed; an unknown option is a ValueError."""
        return configure(self, **options)

    def score(self, response: str, ground_truth: str,
              extra: Mapping[str, Any] | None = None) -> dict[str, float]:
        response = str(response)
        if self.format_mode == "strict":
            fmt = strict_format_ok(response)
            answer = last_boxed(answer_region(response))
        else:
            fmt = mindspeed_format_ok(response)
            answer = last_boxed_mindspeed(response)
        acc = bool(answer) and answers_equal(answer, gold_answer(ground_truth), self.verify_budget_s)
        return combine(self, fmt, acc)


@hookimpl
def register_rewards(register):
    register(BaseAccScorer())
