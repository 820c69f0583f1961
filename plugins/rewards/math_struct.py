"""Verdicts on structured answers: intervals and inequalities, matrices, lists of tuples.

Each ``*_verdict(pred_key, gold_key, guarded)`` returns True / False when both keys have
the structure and every number in them is a constant ``math_numeric`` can evaluate, and
None otherwise (math-verify decides then).

- Sets of reals: ``[a,b)``, unions with ``\\cup``, ``x \\in S``, and one-variable chains
  ``a \\leq x < b`` / ``x > c`` become a sorted, merged list of intervals; two such sets are
  equal iff the lists match (endpoints and open/closed ends). Relations on two different
  variables are left open. A lone ``(a,b)`` counts as an interval only against a set.
- Matrices (``pmatrix``, ``bmatrix``, ``Bmatrix``, ``matrix``, ``array``; not the
  determinant ``vmatrix``): same shape, then cell by cell.
- Lists of two or more tuples ``(1,2),(2,1)``: compared as sets of tuples, as math-verify
  compares them (a solution list has no order).
"""

from __future__ import annotations

import re
from typing import Any, Callable, NamedTuple

from r1zero.plugins.rewards.math_eval import CTX
from r1zero.plugins.rewards.math_keys import (
    encloses, relations, split_commas, strip_outer, top_level,
)
from r1zero.plugins.rewards.math_numeric import (
    DIFFER, DIFFER_DECIMAL, EQUAL, constant, evaluated_verdict, rel_gap,
)

_CUP_SCAN_RE = re.compile(r"[{(\[]|[})\]]|\\cup")
_VARIABLE_RE = re.compile(r"[A-Za-z](?:_\{?[A-Za-z0-9]+\}?)?")
_LESS = {"<": False, r"\leq": True}           # operator -> end is closed
_GREATER = {">": False, r"\geq": True}
_MATRIX_RE = re.compile(r"\\begin\{(pmatrix|bmatrix|Bmatrix|matrix|smallmatrix|array)\}"
                        r"(?:\{[lcr|]*\})?(.*)\\end\{\1\}", re.S)


class Interval(NamedTuple):
    lo: Any
    hi: Any
    lo_closed: bool
    hi_closed: bool
    decimal: bool


# -- sets of reals ------------------------------------------------------------------------
def _interval(part: str, pairs_ok: bool) -> Interval | None:
    """``[a,b)`` and friends with constant ends ``a < b``; ``(a,b)`` only if ``pairs_ok``."""
    if part[:1] not in ("[", "(") or part[-1:] not in ("]", ")") or not encloses(part):
        return None
    if part[0] == "(" and part[-1] == ")" and not pairs_ok:
        return None
    items = split_commas(part[1:-1])
    ends = [constant(i) for i in items] if len(items) == 2 else [None]
    if any(e is None for e in ends) or not ends[0][0] < ends[1][0]:
        return None
    return Interval(ends[0][0], ends[1][0], part[0] == "[", part[-1] == "]",
                    ends[0][1] or ends[1][1])


def _chain(key: str) -> tuple[list[Interval], str] | None:
    """``a \\leq x < b``, ``x > c`` or ``c \\geq x`` -> ([interval], "x")."""
    rel = relations(key)
    if not 1 <= len(rel) <= 2:
        return None
    ops = [m.group() for m in rel]
    cuts = [0] + [p for m in rel for p in (m.start(), m.end())] + [len(key)]
    terms = [key[cuts[i]:cuts[i + 1]].strip() for i in range(0, len(cuts), 2)]
    if all(o in _GREATER for o in ops):             # read "b > x > a" as "a < x < b"
        terms, ops = terms[::-1], [{">": "<", r"\geq": r"\leq"}[o] for o in reversed(ops)]
    if not all(o in _LESS for o in ops):
        return None
    var = [i for i, t in enumerate(terms) if _VARIABLE_RE.fullmatch(t)]
    if len(var) != 1 or (len(terms) == 3 and var[0] != 1):
        return None
    bounds = [constant(t) for i, t in enumerate(terms) if i != var[0]]
    if any(b is None for b in bounds):
        return None
    unbounded = (CTX.inf, False)
    lo, lo_closed = (bounds[0], _LESS[ops[0]]) if var[0] > 0 else ((-CTX.inf, False), False)
    hi, hi_closed = (bounds[-1], _LESS[ops[-1]]) if var[0] < len(terms) - 1 \
        else (unbounded, False)
    if not lo[0] < hi[0]:
        return None
    return [Interval(lo[0], hi[0], lo_closed, hi_closed, lo[1] or hi[1])], terms[var[0]]


def parse_set(key: str, pairs_ok: bool) -> tuple[list[Interval], str | None] | None:
    """A union of intervals and the variable it constrains (None for a bare set)."""
    var = None
    rel = relations(key)
    if rel and rel[0].group() == r"\in" and len(rel) == 1:
        var, key = key[:rel[0].start()].strip(), key[rel[0].end():].strip()
        if not _VARIABLE_RE.fullmatch(var):
            return None
        pairs_ok = True
    elif rel:
        return _chain(key)
    cups = top_level(key, _CUP_SCAN_RE)
    cuts = [0] + [p for m in cups for p in (m.start(), m.end())] + [len(key)]
    parts = [key[cuts[i]:cuts[i + 1]] for i in range(0, len(cuts), 2)]
    intervals = [_interval(p, pairs_ok or len(parts) > 1) for p in parts]
    return None if any(i is None for i in intervals) else (_merge(intervals), var)


def _merge(intervals: list[Interval]) -> list[Interval]:
    out: list[Interval] = []
    for iv in sorted(intervals, key=lambda i: (i.lo, not i.lo_closed)):
        if out and (iv.lo < out[-1].hi or (iv.lo == out[-1].hi and
                                            (iv.lo_closed or out[-1].hi_closed))):
            last = out[-1]
            hi, hi_closed = max((last.hi, last.hi_closed), (iv.hi, iv.hi_closed))
            out[-1] = Interval(last.lo, hi, last.lo_closed, hi_closed, last.decimal or iv.decimal)
        else:
            out.append(iv)
    return out


def _same_sets(a: list[Interval], b: list[Interval]) -> bool | None:
    if len(a) != len(b):
        return False
    verdict: bool | None = True
    for x, y in zip(a, b):
        if (x.lo_closed, x.hi_closed) != (y.lo_closed, y.hi_closed):
            return False
        differ = DIFFER_DECIMAL if x.decimal or y.decimal else DIFFER
        for u, v in ((x.lo, y.lo), (x.hi, y.hi)):
            gap = rel_gap(u, v)
            if gap > differ:
                return False
            if gap > EQUAL:
                verdict = None
    return verdict


def set_verdict(pred: str, gold: str, guarded: bool) -> bool | None:
    ps, gs = parse_set(pred, False), parse_set(gold, False)
    if ps is None and gs is None:
        return None
    ps = ps or parse_set(pred, True)
    gs = gs or parse_set(gold, True)
    if ps is None or gs is None or (ps[1] and gs[1] and ps[1] != gs[1]):
        return None
    verdict = _same_sets(ps[0], gs[0])
    return None if verdict is False and guarded else verdict


# -- matrices -----------------------------------------------------------------------------
def parse_matrix(key: str) -> list[list[str]] | None:
    inner = strip_outer(strip_outer(key, "()"), "[]")
    m = _MATRIX_RE.fullmatch(inner)
    if m is None or "\\begin" in m.group(2):
        return None
    rows = m.group(2).split("\\\\")
    while rows and not rows[-1]:
        rows.pop()
    return [row.split("&") for row in rows] or None


def _all_verdicts(pairs: list[tuple[str, str]], judge: Callable[[str, str], bool | None]
                  ) -> bool | None:
    verdicts = [True if p == g else judge(p, g) for p, g in pairs]
    if False in verdicts:
        return False
    return True if all(v is True for v in verdicts) else None


def matrix_verdict(pred: str, gold: str, guarded: bool) -> bool | None:
    pm, gm = parse_matrix(pred), parse_matrix(gold)
    if pm is None or gm is None or [len(r) for r in pm] != [len(r) for r in gm]:
        return None
    cells = [(p, g) for prow, grow in zip(pm, gm) for p, g in zip(prow, grow)]
    return _all_verdicts(cells, lambda p, g: evaluated_verdict(p, g, guarded))


# -- lists of tuples ----------------------------------------------------------------------
def _tuple(item: str) -> tuple[list[Any], bool] | None:
    inner = strip_outer(item, "()")
    if inner == item:
        return None
    parts = split_commas(inner)
    values = [constant(p) for p in parts]
    if len(parts) < 2 or any(v is None for v in values):
        return None
    return [v[0] for v in values], any(v[1] for v in values)


def _tuples(key: str) -> list[tuple[list[Any], bool]] | None:
    if key.startswith("\\{") and key.endswith("\\}"):
        key = key[2:-2]
    items = split_commas(key)
    tuples = [_tuple(i) for i in items]
    return None if len(items) < 2 or any(t is None for t in tuples) else tuples


def tuple_list_verdict(pred: str, gold: str, guarded: bool) -> bool | None:
    pt, gt = _tuples(pred), _tuples(gold)
    if pt is None or gt is None:
        return None

    def close(a, b, limit) -> bool:
        return len(a[0]) == len(b[0]) and all(rel_gap(x, y) <= limit for x, y in zip(a[0], b[0]))

    def differ_limit(a, b) -> Any:
        return DIFFER_DECIMAL if a[1] or b[1] else DIFFER

    if all(any(close(a, b, EQUAL) for b in gt) for a in pt) and \
            all(any(close(a, b, EQUAL) for a in pt) for b in gt):
        return True
    lonely = any(not any(close(a, b, differ_limit(a, b)) for b in gt) for a in pt) or \
        any(not any(close(a, b, differ_limit(a, b)) for a in pt) for b in gt)
    return False if lonely and not guarded else None
