"""Warm the answer checker once in the scoring forkserver, before any worker is forked.

``warm(checks)`` runs synthetic answer pairs (none from any benchmark corpus) through each
check (``math_equiv.warm_up`` passes the fast path and math-verify). The first equation, sum, matrix or
set that math-verify meets in a process costs 0.1-1 s of lazy sympy imports and ANTLR
prediction-cache building; paid here, once, every worker forked afterwards — including
one that replaces a killed worker — starts warm (copy-on-write). ``BaseAccScorer`` lists
``r1zero.plugins.rewards.preload`` in ``preload_modules``, whose import warms; ``math_equiv``
warms on the first math-verify call of a process that has not (outside that call's time budget).
"""

from __future__ import annotations

import logging
import time
from typing import Callable

log = logging.getLogger(__name__)

PAIRS = [
    ("\\frac{5}{9}", "0.5"), ("3\\sqrt{7}", "\\sqrt{63}"), ("x^3-4x", "x(x-2)(x+2)"),
    ("(4, -1)", "(4,-1)"), ("[2, 8)", "2 \\le t < 8"), ("(-\\infty, 5] \\cup (6, 7)", "[1,2]"),
    ("\\{4, 6\\}", "\\{6, 4\\}"), ("u = 12", "12"), ("a_2 = 5, a_1 = 3", "a_1 = 3, a_2 = 5"),
    ("3p - 2q = 4", "6p - 4q = 8"), ("p^2/9 + q^2/5 = 2", "p^2/3 + q^2/7 = 1"),
    ("\\begin{pmatrix}2&1\\\\0&3\\end{pmatrix}", "\\begin{bmatrix}2&1\\\\0&4\\end{bmatrix}"),
    ("\\sum_{j=1}^{m} j^2", "\\frac{m(m+1)(2m+1)}{6}"), ("\\sum_{i=0}^{m-1} G_i", "G_m"),
    ("\\sin^2(3t)", "1-\\cos^2(3t)"), ("\\log_3 81", "4"), ("e^{2t}", "(e^t)^2"),
    ("35\\%", "0.35"), ("120^\\circ", "\\frac{2\\pi}{3}"), ("\\text{(E)}", "E"),
    ("\\pm 4", "\\{-4, 4\\}"), ("s > 2", "(2, \\infty)"), ("2 - 5i", "2-5i"),
    ("\\binom{9}{4}", "126"), ("7!", "5040"), ("|w - 3|", "3 - w"), ("m \\in (1, 6)", "1<m<6"),
    ("(2,7),(7,2)", "(7,2),(2,7)"), ("\\frac{\\sqrt{5}-1}{4}", "\\cos(72^\\circ)"),
]


def warm(*checks: Callable[[str, str], bool]) -> float:
    """Run every pair through each check (~3 s once); returns the seconds it took."""
    t = time.perf_counter()
    for pred, gold in PAIRS:
        try:
            for check in checks:
                check(pred, gold)
        except Exception as exc:  # noqa: BLE001 - warming must never stop a worker
            log.debug("warm-up pair %r/%r raised %s", pred, gold, exc)
    return time.perf_counter() - t

