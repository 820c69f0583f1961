"""Verdicts on equations ``L = R`` and on lists of assignments ``x_1 = a, x_2 = b``.

``equation_verdict``: two equations have the same solutions when ``L - R`` and
``L' - R'`` are proportional (``x^2/16 + y^2/12 = 1/4`` and ``x^2/4 + y^2/3 = 1``;
``y = -x/2 + 3/4`` and ``2x + 4y - 3 = 0``): a constant nonzero ratio at five points ->
True. A *witness* proves them different: a point found by root finding along one variable
where one equation holds to 45 digits and the other clearly does not -> False. Otherwise
None (``\\sqrt{x} = 2`` vs ``x = 4`` is neither proportional nor refuted that way).

``assignment_list_verdict``: ``a_3 = 2, a_{37} = 19`` vs the same names in another order
(matched by name), and a gold list ``x_1 = a, x_2 = b`` vs a bare list ``a, b`` (matched
in any order, as math-verify compares such sets).
"""

from __future__ import annotations

from typing import Any, Callable

from r1zero.plugins.rewards.math_eval import CTX, evaluate, tokens, variables
from r1zero.plugins.rewards.math_keys import assignment, relations, split_commas
from r1zero.plugins.rewards.math_numeric import EQUAL, MAX_VARIABLES, points, rel_gap

_ZERO = CTX.mpf(10) ** -40
_ROOT = CTX.mpf(10) ** -30
_OFF = CTX.mpf(10) ** -15
Judge = Callable[[str, str], "bool | None"]


def _difference(key: str) -> list[str] | None:
    """Tokens of ``(L)-(R)`` for a key ``L=R`` with exactly one top-level relation."""
    rel = relations(key)
    if len(rel) != 1 or rel[0].group() != "=":
        return None
    lhs, rhs = key[:rel[0].start()], key[rel[0].end():]
    return tokens(f"({lhs})-({rhs})") if lhs and rhs else None


def _value(toks: list[str], point: dict[str, Any]) -> Any:
    v = evaluate(toks, point)
    if v is None or len(v) != 1 or CTX.isinf(v[0]):
        raise ArithmeticError("not a finite value")
    return v[0]


def _witness(zero: list[str], other: list[str], names: set[str], scale: Any) -> bool:
    """Some point has ``zero`` = 0 (a root along one variable) but ``other`` != 0."""
    var = sorted(names - {"e"})[0]
    for start in points(names, 3):
        def along(t: Any, start=start) -> Any:
            return _value(zero, {**start, var: t})
        try:
            root = CTX.findroot(along, (start[var], start[var] * 1.1 + 0.1), solver="secant",
                                maxsteps=60)
            if not isinstance(root, CTX.mpf) or abs(along(root)) > _ROOT:
                continue
            if abs(_value(other, {**start, var: root})) > _OFF * scale:
                return True
        except (ArithmeticError, ValueError, TypeError, ZeroDivisionError):
            continue
    return False


def equation_verdict(pred: str, gold: str) -> bool | None:
    pf, gf = _difference(pred), _difference(gold)
    if pf is None or gf is None:
        return None
    names = variables(pf)
    if not names - {"e"} or names != variables(gf) or "i" in names \
            or len(names) > MAX_VARIABLES:
        return None
    try:
        pv = [_value(pf, pt) for pt in points(names, 5)]
        gv = [_value(gf, pt) for pt in points(names, 5)]
    except ArithmeticError:
        return None
    if all(abs(b) > _ZERO for b in gv):
        ratios = [a / b for a, b in zip(pv, gv)]
        if abs(ratios[0]) > _ZERO and all(rel_gap(r, ratios[0]) <= EQUAL for r in ratios):
            return True
    scale_p, scale_g = max(abs(v) for v in pv), max(abs(v) for v in gv)
    if _witness(gf, pf, names, scale_p) or _witness(pf, gf, names, scale_g):
        return False
    return None


def _combine(verdicts: list[bool | None]) -> bool | None:
    if False in verdicts:
        return False
    return True if verdicts and all(v is True for v in verdicts) else None


def _matching(table: list[list[bool | None]]) -> bool:
    """Whether rows can be paired one-to-one with columns on True cells (small n)."""
    def assign(row: int, used: frozenset) -> bool:
        if row == len(table):
            return True
        return any(ok is True and col not in used and assign(row + 1, used | {col})
                   for col, ok in enumerate(table[row]))
    return assign(0, frozenset())


def assignment_list_verdict(pred: str, gold: str, judge: Judge) -> bool | None:
    gold_items = [assignment(i) for i in split_commas(gold)]
    if len(gold_items) < 2 or any(i is None for i in gold_items) or len(gold_items) > 8:
        return None
    pred_parts = split_commas(pred)
    pred_items = [assignment(i) for i in pred_parts]
    if all(pred_items):
        pmap, gmap = dict(pred_items), dict(gold_items)
        if len(pmap) != len(pred_items) or len(gmap) != len(gold_items) or set(pmap) != set(gmap):
            return None
        return _combine([judge(pmap[k], gmap[k]) for k in gmap])
    if any(relations(p) for p in pred_parts) or len(pred_parts) != len(gold_items):
        return None
    table = [[judge(p, g[1]) for g in gold_items] for p in pred_parts]
    if _matching(table):
        return True
    lonely_row = any(all(v is False for v in row) for row in table)
    lonely_col = any(all(row[j] is False for row in table) for j in range(len(gold_items)))
    return False if lonely_row or lonely_col else None
