"""Decide equality of arithmetic answers by evaluating them at the same points.

Values come from ``math_eval`` (50 significant digits). Two values are *equal* when they
agree to 35 digits and *differ* when their relative gap exceeds 1e-12 — or 1e-3 when a
decimal literal is involved, since "3.14" vs "\\pi" is a question of rounding conventions
that math-verify answers. Between the two the verdict is left open.

``evaluated_verdict(pred_key, gold_key, guarded)`` evaluates both keys at three fixed
pseudo-random points for their variables (``e`` is Euler's number; ``i`` is left to
math-verify; five whole-number points when a sum, product or subscript needs integers)
and returns True when every item is equal at every point and both are written
alike (bare lists or parenthesised tuples); False when the lists have equal length and some
item has no partner that is not clearly different — unless ``guarded`` (a % or degree sign
was stripped); None otherwise. Two different expressions of this grammar agreeing at three
random real points is a probability-zero event (at five integer points, a very unlikely one).
"""

from __future__ import annotations

import random
from typing import Any

from r1zero.plugins.rewards.math_eval import CTX, evaluate, tokens, variables

EQUAL = CTX.mpf(10) ** -35
DIFFER = CTX.mpf(10) ** -12
DIFFER_DECIMAL = CTX.mpf(10) ** -3
MAX_VARIABLES = 6


def points(names: set[str], count: int = 3, integer: bool = False) -> list[dict[str, Any]]:
    """``count`` assignments of the variables in ``names`` (the same for the same names);
    ``integer``: whole numbers 4..15, for answers with sums whose bounds are variables."""
    rng = random.Random(20250731)
    ordered = sorted(names - {"e"})
    out = []
    for _ in range(count):
        point = {n: CTX.mpf(rng.randint(4, 15) if integer else rng.uniform(0.3, 2.7))
                 for n in ordered}
        point["e"] = +CTX.e
        out.append(point)
    return out


def rel_gap(a: Any, b: Any) -> Any:
    if a == b:
        return CTX.zero
    if CTX.isinf(a) or CTX.isinf(b):
        return CTX.inf
    return abs(a - b) / max(abs(a), abs(b))


def has_decimal(toks: list[str]) -> bool:
    return any("." in t for t in toks)


def constant(key: str) -> tuple[Any, bool] | None:
    """(value, written with a decimal) of a key without variables (``\\infty`` allowed)."""
    toks = tokens(key)
    if toks is None or variables(toks) - {"e"}:
        return None
    values = evaluate(toks, points(set(), 1)[0])
    return (values[0], has_decimal(toks)) if values and len(values) == 1 else None


def _compare(a: list[Any], b: list[Any], differ: Any) -> str:
    if len(a) == len(b) and all(rel_gap(x, y) <= EQUAL for x, y in zip(a, b)):
        return "equal"
    if len(a) != len(b):          # "1000,99" vs "1000.99": a decimal comma, maybe
        return "unsure"
    lonely = any(all(rel_gap(x, y) > differ for y in b) for x in a) or \
        any(all(rel_gap(x, y) > differ for x in a) for y in b)
    return "differ" if lonely else "unsure"


def _is_tuple(toks: list[str]) -> bool:
    return toks[:1] == ["("] and toks[-1:] == [")"] and "," in toks


def evaluated_verdict(pred_key: str, gold_key: str, guarded: bool) -> bool | None:
    pt, gt = tokens(pred_key), tokens(gold_key)
    if pt is None or gt is None:
        return None
    names = variables(pt)
    if names != variables(gt) or "i" in names or len(names) > MAX_VARIABLES:
        return None
    differ = DIFFER_DECIMAL if has_decimal(pt) or has_decimal(gt) else DIFFER
    outcomes = set()
    indexed = any(t in (r"\sum", r"\prod", "_") for t in pt + gt)   # needs integer points
    for point in points(names, 5 if indexed else 3, integer=indexed):
        a, b = evaluate(pt, point), evaluate(gt, point)
        if a is None or b is None:
            return None
        outcomes.add(_compare(a, b, differ))
    if outcomes == {"equal"}:
        return True if _is_tuple(pt) == _is_tuple(gt) else None
    if "differ" in outcomes and not guarded:
        return False
    return None
