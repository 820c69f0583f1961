"""Answers that look like program code are never a correct answer.

A parser may read ``(lambda: 42)()`` or ``42.real`` as 42 (math-verify 0.9 does), but a
model that writes code in its box has not given a number. ``code_like_reason(text)``
returns why ``text`` looks like code, or None; ``math_equiv`` then compares such an answer
as a string only, so it equals a number never and an identical gold string only.

Code is: a dunder (``__import__``, ``__class__``); a Python keyword or builtin used as
a word (``lambda``, ``import``, ``eval``, ``exec``, ``print``, ``def``, ``return``…);
against a numeric gold, a one-letter function applied to constants as the value
(``f(3)``, ``C(10,5)``; but ``f(3) = 9`` is an answer ``9``);
a comprehension (``for i in``); attribute access (``math.pi``, ``x.real``, ``42.real``,
``(42).real``); an empty call ``f()``; a call of a Python builtin or module
(``int(42)``, ``pow(2,5)``, ``np.sqrt``); indexing (``[42][0]``, ``x[0]``); a quoted
literal (``'42'``, ``"42"``); a hex, octal or binary literal (``0x2a``).

Mathematics keeps its notation: ``\\lambda``, ``f(x) = x^2``, ``f(3) = 9``, ``\\sin(x)``,
``sin(x)``, ``xy(x+y)``, decimals (``3.5``, ``.5``), primes (``f'(x)``, ``f''(x)``),
intervals, points and sets, ``\\sqrt[3]{x}``, ``\\ldots``, ``e.g.``.
"""

from __future__ import annotations

import re

_WORD = r"(?<![\\A-Za-z_0-9])({})(?![A-Za-z_0-9])"
_KEYWORDS = ("lambda", "import", "exec", "eval", "print", "def", "return", "yield", "assert",
             "await", "async", "nonlocal", "globals", "locals", "getattr", "setattr",
             "delattr", "compile", "breakpoint", "__builtins__")
_BUILTINS = ("int", "float", "str", "bool", "complex", "len", "range", "sum", "pow", "round",
             "list", "dict", "set", "tuple", "sorted", "reversed", "map", "filter", "zip",
             "enumerate", "divmod", "id", "hash", "repr", "chr", "ord", "bin", "hex", "oct",
             "type", "vars", "dir", "iter", "next", "any", "all", "bytes", "object", "super",
             "input", "open", "Integer", "Rational", "Float", "Symbol", "sympify", "S",
             "Matrix", "math", "np", "numpy", "os", "sys", "subprocess", "sympy", "builtins")
_RULES = [
    ("a dunder name", re.compile(r"__")),
    ("a Python keyword", re.compile(_WORD.format("|".join(_KEYWORDS)))),
    ("a comprehension", re.compile(r"(?<![\\A-Za-z])for\s+[A-Za-z_]\w*\s+in(?![A-Za-z])")),
    ("attribute access", re.compile(r"(?:(?<![\\A-Za-z])[A-Za-z_]\w*|\d|[)\]])\.[A-Za-z_]")),
    ("an empty call", re.compile(r"[\w)\]]\s*\(\s*\)")),
    ("a call of a Python builtin", re.compile(_WORD.format("|".join(_BUILTINS)) + r"\s*[(.\[]")),
    ("indexing", re.compile(r"\]\s*\[|(?<![\\A-Za-z])[A-Za-z_]\w*\[\s*-?\d+\s*\]")),
    ("a quoted literal", re.compile(r"\"[^\"\s]*\"|(?<![A-Za-z0-9}')\]])'[^'\s]+'")),
    ("a hex, octal or binary literal", re.compile(r"(?<![\w.])0[xXoObB][0-9a-fA-F]+")),
]


# f(3), C(10,5): a one-letter function applied to constants, as the value (not "f(3) = 9")
_CONSTANT_CALL_RE = re.compile(r"(?<![\\A-Za-z])[A-Za-z]\s*\(\s*[-+]?[\d.]+(?:\s*,\s*[-+]?[\d.]+)*\s*\)")


_ABBREVIATION_RE = re.compile(r"(?<![A-Za-z])(?:e\.g|i\.e|etc|vs|cf|resp)\.")


def code_like_reason(text: str, against_number: bool = True) -> str | None:
    """Why ``text`` looks like program code (see module doc), or None. A one-letter call
    counts only ``against_number`` (``x(3)`` may well be ``3x`` next to ``3x``)."""
    text = _ABBREVIATION_RE.sub(" ", text)
    for reason, rule in _RULES:
        m = rule.search(text)
        if m:
            return f"looks like code: {reason} ({m.group()[:20]!r})"
    m = _CONSTANT_CALL_RE.search(text.rsplit("=", 1)[-1]) if against_number else None
    if m:
        return f"looks like code: a call ({m.group()[:20]!r})"
    return None
