"""A small, safe evaluator for the arithmetic answers most math problems have.

``evaluate(key, point)`` reads a ``canonical`` key (no spaces, ``\\left``/``\\dfrac``
already normalised) with a recursive-descent parser over a fixed token set and returns
a list of 50-digit mpmath numbers (one per comma-separated item) or None when the key uses anything outside
this grammar — the caller then asks math-verify. Nothing is ever evaluated as code.

    list   := expr ("," expr)*            (optionally wrapped in one pair of ( ) )
    expr   := ["+"|"-"] term (("+"|"-") term)*
    term   := power (("*"|"\\cdot"|"\\times"|"/"|"\\div"|<juxtaposition>) power)*
    power  := atom ["^" (group | digit | letter)]
    atom   := number | letter ["_" (group | digit | letter)] | "\\pi" | "\\infty"
            | "(" expr ")" | group | "\\frac" group group | "\\sqrt" ["[" expr "]"] group
            | FUNC ["^" ...] "(" expr ")" | ("\\sum"|"\\prod") "_{" letter "=" expr "}^" (group|digit|letter) term
    group  := "{" expr "}"

Letters are variables, looked up in ``point``; ``variables(key)`` lists them so the
caller can evaluate both answers at the same random points. A subscripted letter
(``F_{n-1}``, ``x_2``) is an unknown sequence: a fixed pseudo-random value per (letter,
integer index), the same for both answers, so ``\\sum_{k=0}^{n-1} F_k F_{n-1-k}`` can be
compared with a reordered sum by evaluating at integer ``n``. Bounds: the key is short
(the caller checks ``complexity_reason`` first), exponents are capped at ``MAX_EXP`` and
every arithmetic error (domain, division by zero, complex or nan results) gives None.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, Callable, Mapping

import mpmath

# A private context: 50 significant digits keep cancellation (sqrt(n^2+1)-n) from flipping
# a verdict, and sympy's use of the global mpmath context is left alone.
CTX = mpmath.MPContext()
CTX.dps = 50
MAX_EXP = 1000
MAX_TERMS = 2000             # terms of all \sum / \prod in one evaluation, nested ones too
_TOKEN_RE = re.compile(r"\d+\.\d*|\.\d+|\d+|\\[A-Za-z]+ ?|[A-Za-z]|[-+*/^(){}\[\],_=]| ")
_FUNCS: dict[str, Callable[[Any], Any]] = {
    r"\sin": CTX.sin, r"\cos": CTX.cos, r"\tan": CTX.tan, r"\ln": CTX.ln, r"\exp": CTX.exp,
    r"\sec": CTX.sec, r"\csc": CTX.csc, r"\cot": CTX.cot, r"\arcsin": CTX.asin,
    r"\arccos": CTX.acos, r"\arctan": CTX.atan,
}
_MUL = {"*", r"\cdot", r"\times"}
_DIV = {"/", r"\div"}


class _Unsupported(Exception):
    pass


def _integer(value: Any) -> int:
    n = int(CTX.nint(value))
    if abs(value - n) > CTX.mpf(10) ** -30 or abs(n) > 10**6:
        raise _Unsupported("not a small integer")
    return n


def sequence_value(name: str, index: Any) -> Any:
    """The unknown sequence ``name`` at an integer index: a fixed value in [0.5, 2.5)."""
    digest = hashlib.blake2b(f"{name}_{_integer(index)}".encode(), digest_size=8).digest()
    return CTX.mpf(0.5) + 2 * CTX.mpf(int.from_bytes(digest, "big")) / 2**64


def tokens(key: str) -> list[str] | None:
    """Tokens of ``key``, or None if some character is outside the grammar."""
    out, at = [], 0
    for m in _TOKEN_RE.finditer(key):
        if m.start() != at:
            return None
        out.append(m.group().rstrip() if m.group()[0] == "\\" else m.group())
        at = m.end()
    return out if at == len(key) else None


def variables(toks: list[str]) -> set[str]:
    """Free letters: not a sum's bound variable, not a sequence name (the F of F_k)."""
    bound = {toks[i + 3] for i, t in enumerate(toks[:-3])
             if t in (r"\sum", r"\prod") and toks[i + 1:i + 3] == ["_", "{"]}
    named = {t for t, nxt in zip(toks, toks[1:]) if nxt == "_"}
    return {t for t in toks if len(t) == 1 and t.isalpha()} - bound - named


class _Parser:
    def __init__(self, toks: list[str], point: Mapping[str, Any]):
        self.toks, self.i, self.point = toks, 0, point
        self.terms_left = MAX_TERMS

    def peek(self) -> str | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self, expected: str | None = None) -> str:
        tok = self.peek()
        if tok is None or (expected is not None and tok != expected):
            raise _Unsupported(f"expected {expected!r}, got {tok!r}")
        self.i += 1
        return tok

    def expr(self) -> Any:
        sign = -1 if self.peek() == "-" else 1
        if self.peek() in ("-", "+"):
            self.i += 1
        value = sign * self.term()
        while self.peek() in ("+", "-"):
            op = self.take()
            rhs = self.term()
            value = value + rhs if op == "+" else value - rhs
        return value

    def term(self) -> Any:
        start = self.i
        value = self.power()
        while True:
            tok = self.peek()
            if tok in _MUL or tok in _DIV:
                self.i += 1
                rhs = self.power()
                value = value * rhs if tok in _MUL else value / rhs
            elif tok is not None and tok not in ("+", "-", ")", "}", "]", ",", "^", " "):
                if tok[0].isdigit() or tok[0] == ".":     # "2 3" or "x2": not a product we trust
                    raise _Unsupported("number after an atom")
                if tok == r"\frac" and self.toks[self.i - 1].isdigit():
                    if self.i != start + 1:                 # 3\cdot 2\frac{1}{2}: unclear
                        raise _Unsupported("number before \\frac")
                    value = self.mixed_number(value)    # 918\frac{1}{2} is a mixed number
                    continue
                value *= self.power()
            else:
                return value

    def mixed_number(self, whole: Any) -> Any:
        """``918\\frac{1}{2}`` = 918.5, as the MATH graders read it; only integer parts."""
        toks = self.toks[self.i:self.i + 7]
        if not (len(toks) == 7 and toks[1::3] == ["{", "{"]
                and toks[3:5] == ["}", "{"] and toks[6] == "}"
                and toks[2].isdigit() and toks[5].isdigit()):
            raise _Unsupported("number before \\frac")
        self.i += 7
        return whole + CTX.mpf(int(toks[2])) / int(toks[5])

    def power(self) -> Any:
        base = self.atom()
        return base if self.peek() != "^" else base ** self.exponent()

    def exponent(self) -> Any:
        self.take("^")
        tok = self.peek()
        if tok == "{":
            exponent = self.group()
        elif tok is not None and (len(tok) == 1 and (tok.isdigit() or tok.isalpha())):
            exponent = self.atom()
        else:
            raise _Unsupported("exponent must be a group, one digit or one letter")
        if abs(exponent) > MAX_EXP:
            raise _Unsupported("exponent too large")
        return exponent

    def group(self) -> Any:
        self.take("{")
        value = self.expr()
        self.take("}")
        return value

    def atom(self) -> Any:
        tok = self.take()
        if tok[0].isdigit() or tok[0] == ".":
            return CTX.mpf(tok)
        if len(tok) == 1 and tok.isalpha():
            if self.peek() == "_":
                self.take("_")
                return sequence_value(tok, self.group() if self.peek() == "{" else self.small())
            return self.point[tok]
        if tok == "(":
            value = self.expr()
            self.take(")")
            return value
        if tok == "{":
            self.i -= 1
            return self.group()
        if tok == r"\pi":
            return +CTX.pi
        if tok == r"\infty":
            return CTX.inf
        if tok == r"\frac":
            return self.group() / self.group()
        if tok == r"\sqrt":
            index = CTX.mpf(2)
            if self.peek() == "[":
                self.take("[")
                index = self.expr()
                self.take("]")
            return CTX.root(self.group(), index) if index != 2 else CTX.sqrt(self.group())
        if tok in (r"\sum", r"\prod"):
            return self.big_operator(tok == r"\sum")
        if tok in _FUNCS:                   # \sin(x), \sin^2(x), \sin^{2}(x)
            power = self.exponent() if self.peek() == "^" else None
            self.take("(")
            arg = self.expr()
            self.take(")")
            value = _FUNCS[tok](arg)
            return value if power is None else value ** power
        raise _Unsupported(tok)


    def small(self) -> Any:
        """One digit or one letter (a bare sub- or superscript)."""
        tok = self.peek()
        if tok is None or len(tok) != 1 or not tok.isalnum():
            raise _Unsupported("expected one digit or letter")
        return self.atom()

    def big_operator(self, is_sum: bool) -> Any:
        """``\\sum_{k=a}^{b} term``: a, b integers; MAX_TERMS bounds all of them together."""
        self.take("_")
        self.take("{")
        var = self.take()
        if len(var) != 1 or not var.isalpha():
            raise _Unsupported("bound variable")
        self.take("=")
        lo = _integer(self.expr())
        self.take("}")
        self.take("^")
        hi = _integer(self.group() if self.peek() == "{" else self.small())
        self.terms_left -= max(hi - lo + 1, 1)
        if self.terms_left < 0:
            raise _Unsupported("too many terms")
        start, outer, total = self.i, self.point, CTX.mpf(0 if is_sum else 1)
        for k in range(lo, max(hi, lo) + 1):        # at least once, to find the term's end
            self.i, self.point = start, {**outer, var: CTX.mpf(k)}
            value = self.term()
            if k <= hi:
                total = total + value if is_sum else total * value
        self.point = outer
        return total


def evaluate(toks: list[str], point: Mapping[str, Any]) -> list[Any] | None:
    """Values of a comma-separated list of expressions at ``point``; None if unsupported."""
    if toks[:1] == ["("] and toks[-1:] == [")"] and "," in toks:
        toks = toks[1:-1]
    parser = _Parser(toks, point)
    try:
        values = [parser.expr()]
        while parser.peek() == ",":
            parser.i += 1
            values.append(parser.expr())
        if parser.peek() is not None:
            return None
    except (_Unsupported, ArithmeticError, ValueError, TypeError, KeyError, RecursionError):
        return None
    if any(not isinstance(v, CTX.mpf) or CTX.isnan(v) for v in values):
        return None
    return values
