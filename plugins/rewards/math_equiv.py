"""Does a predicted final answer equal the ground truth?

``answers_equal(pred, gold)`` decides in three steps:

1. ``prepare`` both sides: ``sanitize`` (control characters, lone surrogates, unicode math),
   the ``canonical`` string key and the bounds of ``math_bounds`` (length, nesting, exponent
   towers, and the arguments of factorials, binomials, Gamma, sums and products). A predicted
   answer that looks like code (``code_like``) is treated the same way: an answer over a
   bound or like code is only ever compared as a string.
2. ``key_verdict`` on the keys, no parser involved: equal keys; ``x = 11`` vs ``11`` and
   ``(p,q) = (3,2)`` vs ``(3,2)`` (assignments, as math-verify reads them); a bare value
   against an equation gold (``0`` vs ``a+z=0``) is wrong; a prime on one side only
   (``E'`` vs ``E``) is wrong; exact numbers compare exactly (``math_normalize``);
   arithmetic expressions are evaluated at random points (``math_numeric``); intervals,
   inequalities, matrices and lists of tuples compare structurally (``math_struct``);
   equations compare by proportionality or a witness point (``math_relations``). Each
   answers True / False only when sure, else None. A decimal close to the other value is
   always left to math-verify, whose rounding rules decide.
3. math-verify ``parse`` (LaTeX only: its plain-expression reader evaluates with sympy's
   ``parse_expr``) + ``verify`` for the rest, after dropping ``name =`` where
   math-verify would, within a per-sample time budget (``budget.call_within``, default
   ``VERIFY_BUDGET_S``); over budget the answer is wrong. math-verify's own one-second
   signal timeouts are off. A trailing letter is kept a variable, not dropped as a unit,
   and a parse that lost a side's variables decides nothing (``math_letters``). A relation against a set (``-2 \\le x \\le 7`` vs ``x \\in [-2,7]``)
   that fails is retried with set-relation comparison.

On the 616 labelled responses of ``benchmarks/reward_bench.py`` step 2 decides ~75% of the
boxed answers in well under a millisecond each; step 3 costs 1-800 ms.
"""

from __future__ import annotations

import logging
import re
from fractions import Fraction
from functools import lru_cache
from typing import Any, NamedTuple

from math_verify import LatexExtractionConfig, parse, verify

from r1zero.plugins.rewards import warmup
from r1zero.plugins.rewards.budget import OverBudget, call_within
from r1zero.plugins.rewards.code_like import code_like_reason
from r1zero.plugins.rewards.math_bounds import (
    MAX_PARSE_CHARS,
    complexity_reason,
    explosion_reason,
)
from r1zero.plugins.rewards.math_keys import assignment, is_equation_gold, relations
from r1zero.plugins.rewards.math_letters import keeps_variables, protect_letters
from r1zero.plugins.rewards.math_normalize import canonical, parse_number, sanitize
from r1zero.plugins.rewards.math_numeric import constant, evaluated_verdict
from r1zero.plugins.rewards.math_relations import assignment_list_verdict, equation_verdict
from r1zero.plugins.rewards.math_struct import matrix_verdict, set_verdict, tuple_list_verdict

_SET_HINT_RE = re.compile(r"\\in\b|\\cup|\\cap|[\[\]]|\\infty")
_REL_HINT_RE = re.compile(r"\\[lg]eq?\b|[<>]|\\le\b|\\ge\b")
_MARKS_RE = re.compile(r"%|\\circ|\\degree")
_WARM = [False]               # math-verify warmed up in this process (or its parent)
VERIFY_BUDGET_S = 0.4         # math-verify CPU seconds per answer pair (the corpus needs < 0.3)


class Prepared(NamedTuple):
    text: str                # sanitized, what a parser may see
    key: str                 # canonical string key
    unsafe: str | None       # why it must never be parsed (math_bounds, code_like)
    marks: bool              # had % or a degree sign (stripped from the key)


def prepare(text: str) -> Prepared:
    text = sanitize(text).strip()
    unsafe = complexity_reason(text)
    key = canonical(text) if len(text) <= MAX_PARSE_CHARS else text
    if unsafe is None:
        unsafe = explosion_reason(key)
    return Prepared(text, key, unsafe, bool(_MARKS_RE.search(text)))


def prepare_prediction(text: str, gold: Prepared) -> Prepared:
    """``prepare``, and a prediction that looks like code is never parsed either."""
    p = prepare(text)
    if p.unsafe:
        return p
    return p._replace(unsafe=code_like_reason(p.text, against_number=is_number(gold.key)))


def is_number(key: str) -> bool:
    """Whether a key is one constant: ``42``, ``-\\frac{3}{4}``, ``2\\sqrt{2}``, ``\\pi/2``."""
    return parse_number(key) is not None or constant(key) is not None


_prepare_gold = lru_cache(maxsize=1024)(prepare)      # a gold recurs n_samples_per_prompt times


def _numeric_verdict(a: tuple[Fraction, bool], b: tuple[Fraction, bool],
                     guarded: bool) -> bool | None:
    (x, x_dec), (y, y_dec) = a, b
    if x == y:
        return True
    if guarded:                   # 28% may mean 0.28: math-verify knows the conventions
        return None
    if not (x_dec or y_dec):
        return False
    close = abs(x - y) <= Fraction(1, 1000) * max(abs(x), abs(y), Fraction(1, 10**9))
    return None if close else False


def _relation_verdict(pred: str, gold: str, guarded: bool, depth: int) -> bool | None:
    """Assignments (``x = 11`` vs ``11``), equation golds, primes and equations."""
    pa, ga = assignment(pred), assignment(gold)
    if pa and not relations(gold):                  # "x=11" answers a bare "11"
        return key_verdict(pa[1], gold, guarded, depth + 1)
    if ga and not relations(pred):                  # "11" answers "x=11" (and "(3,2)" (p,q)=(3,2))
        return key_verdict(pred, ga[1], guarded, depth + 1)
    if pa and ga and pa[0] == ga[0]:
        return key_verdict(pa[1], ga[1], guarded, depth + 1)
    if is_equation_gold(gold) and not relations(pred):
        return False                                # "0" does not answer "a+z=0"
    if "=" not in pred and "=" not in gold and pred.count("'") != gold.count("'"):
        return False                                # E' is not E
    return equation_verdict(pred, gold)


def key_verdict(pred: str, gold: str, guarded: bool, depth: int = 0) -> bool | None:
    """True / False when the canonical keys decide, None to ask math-verify."""
    if not pred:
        return False
    if pred == gold:
        return True
    if depth > 3:
        return None
    verdict = _relation_verdict(pred, gold, guarded, depth)
    if verdict is not None:
        return verdict
    pnum, gnum = parse_number(pred), parse_number(gold)
    if pnum is not None and gnum is not None:
        return _numeric_verdict(pnum, gnum, guarded)
    for judge in (evaluated_verdict, set_verdict, matrix_verdict, tuple_list_verdict):
        verdict = judge(pred, gold, guarded)
        if verdict is not None:
            return verdict
    return assignment_list_verdict(pred, gold,
                                   lambda p, g: key_verdict(p, g, guarded, depth + 1))


def fast_verdict(pred: Prepared, gold: Prepared) -> bool | None:
    """``key_verdict`` on prepared answers; answers over a bound only compare as strings."""
    if pred.key == gold.key:
        return bool(pred.key)
    if pred.unsafe or gold.unsafe:
        return False
    return key_verdict(pred.key, gold.key, pred.marks or gold.marks)


def answers_equal(pred: str, gold: str, budget_s: float = VERIFY_BUDGET_S) -> bool:
    """Whether ``pred`` (a final answer, e.g. the content of ``\\boxed{}``) equals ``gold``;
    math-verify, when asked, gets ``budget_s`` seconds."""
    g = _prepare_gold(gold)
    p = prepare_prediction(pred, g)
    verdict = fast_verdict(p, g)
    return verdict if verdict is not None else verify_within(p.text, g.text, budget_s)


def warm_up() -> float:
    """Warm math-verify in this process (``warmup.PAIRS`` through both checks); seconds taken."""
    _WARM[0] = True
    return warmup.warm(answers_equal, _math_verify_equal)


def verify_within(pred: str, gold: str, budget_s: float) -> bool:
    """math-verify's verdict on two bounded answers, False when over ``budget_s``. The first
    call in a process warms math-verify up first, outside the budget (``warmup``; a scoring
    worker forked from the warm forkserver skips that)."""
    if not _WARM[0]:
        warm_up()
    try:
        return call_within(budget_s, _math_verify_equal, pred, gold)
    except OverBudget:
        return False


# -- math-verify --------------------------------------------------------------------------
class _DropTimeoutDisabledWarning(logging.Filter):
    """math-verify warns once that its signal timeout is off; here that is deliberate."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Timeout is disabled" not in record.getMessage()


for _name in ("math_verify.parser", "math_verify.grader"):
    logging.getLogger(_name).addFilter(_DropTimeoutDisabledWarning())


# LaTeX only: math-verify's plain-expression reader hands text to sympy's parse_expr (eval)
LATEX_ONLY = [LatexExtractionConfig()]


def for_parser(text: str) -> str:
    return "$" + text.replace("\\$", "").replace("$", "") + "$"


@lru_cache(maxsize=1024)
def _parse_gold(text: str) -> list[Any]:
    return parse(for_parser(text), extraction_config=LATEX_ONLY, parsing_timeout=None)


def reduce_assignments(pred: str, gold: str) -> tuple[str, str]:
    """Drop ``name =`` where math-verify would: ``x = 11`` vs ``11`` compares ``11`` vs ``11``,
    ``F_n = A`` vs ``F_n = B`` compares ``A`` vs ``B`` — the same verdict, parsed in a
    fraction of the time."""
    pa, ga = assignment(pred), assignment(gold)
    if pa and ga and canonical(pa[0]) == canonical(ga[0]):
        return pa[1], ga[1]
    if pa and not relations(gold):
        return pa[1], gold
    if ga and not relations(pred):
        return pred, ga[1]
    return pred, gold


def _math_verify_equal(pred: str, gold: str) -> bool:
    pred, gold = reduce_assignments(pred, gold)
    pred, gold = protect_letters(pred), protect_letters(gold)
    gold_parsed = _parse_gold(gold)
    pred_parsed = parse(for_parser(pred), extraction_config=LATEX_ONLY, parsing_timeout=None)
    if not gold_parsed or not pred_parsed or not keeps_variables(pred, pred_parsed, gold,
                                                                 gold_parsed):
        return False
    if verify(gold_parsed, pred_parsed, timeout_seconds=None):
        return True
    relation_vs_set = ((_REL_HINT_RE.search(pred) and _SET_HINT_RE.search(gold))
                       or (_REL_HINT_RE.search(gold) and _SET_HINT_RE.search(pred)))
    return bool(relation_vs_set) and verify(gold_parsed, pred_parsed, timeout_seconds=None,
                                            allow_set_relation_comp=True)
