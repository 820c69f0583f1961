"""Deterministic math problems with exact answers, shaped like DeepScaleR records.

A record is ``{"id", "problem", "answer", "solution"}`` with the answer in the LaTeX-ish
forms DeepScaleR uses: ``17``, ``-4``, ``\\frac{3}{4}``, ``-\\frac{5}{2}``. Every answer is
computed with :class:`fractions.Fraction` while the problem is built, never read back from text.

Two uses:
  * ``sample_records(n, seed)`` -- varied problems (arithmetic, fractions, linear equations,
    gcd/lcm, percentages, means, sums, word problems) for ``examples/data/``;
  * ``demo_records(n, seed)`` -- the demo's easy problems (``What is 37 + 48?``) that a
    2-layer model can learn.
"""

from __future__ import annotations

import math
import random
import re
from fractions import Fraction
from typing import Callable

Problem = tuple[str, Fraction, str]  # (problem text, exact answer, worked solution)

_FRAC_RE = re.compile(r"(-?)\\frac\{(\d+)\}\{(\d+)\}")
_INT_RE = re.compile(r"-?\d+")


def format_answer(value: Fraction | int) -> str:
    """Exact value -> DeepScaleR answer string: ``17``, ``-4``, ``\\frac{3}{4}``, ``-\\frac{5}{2}``."""
    q = Fraction(value)
    if q.denominator == 1:
        return str(q.numerator)
    sign = "-" if q < 0 else ""
    return f"{sign}\\frac{{{abs(q.numerator)}}}{{{q.denominator}}}"


def parse_answer(text: str) -> Fraction:
    """Inverse of :func:`format_answer` (regex only, never eval); ValueError on anything else."""
    s = text.strip()
    if _INT_RE.fullmatch(s):
        return Fraction(int(s))
    m = _FRAC_RE.fullmatch(s)
    if m:
        q = Fraction(int(m.group(2)), int(m.group(3)))
        return -q if m.group(1) else q
    raise ValueError(f"not an integer or \\frac{{a}}{{b}} answer: {text!r}")


def _tex(q: Fraction | int) -> str:
    """Value as it appears inside a problem's ``$...$``; negatives in parentheses are the caller's job."""
    return format_answer(q)


def _paren(q: Fraction | int) -> str:
    s = _tex(q)
    return f"({s})" if Fraction(q) < 0 else s


def _boxed(q: Fraction) -> str:
    return f"$\\boxed{{{format_answer(q)}}}$"


# --- families of the sample set -------------------------------------------------------------

def integer_arithmetic(rng: random.Random) -> Problem:
    """``Compute $a op b$.`` with op in +, -, times; operands may be negative."""
    op = rng.choice(["+", "-", "\\times"])
    hi = 99 if op == "\\times" else 999
    a, b = rng.randint(-hi, hi), rng.randint(-hi, hi)
    value = {"+": a + b, "-": a - b, "\\times": a * b}[op]
    expr = f"{_tex(a)} {op} {_paren(b)}"
    sol = f"We have ${expr} = {value}$. The answer is {_boxed(Fraction(value))}"
    return f"Compute ${expr}$.", Fraction(value), sol


def order_of_operations(rng: random.Random) -> Problem:
    """``Evaluate $a + b \\cdot c - d$.`` or ``$(a + b) \\cdot c - d$.``"""
    a, b, c, d = (rng.randint(1, 30) for _ in range(4))
    if rng.random() < 0.5:
        expr, inner, value = f"{a} + {b} \\cdot {c} - {d}", f"{a} + {b * c} - {d}", a + b * c - d
    else:
        expr, inner = f"({a} + {b}) \\cdot {c} - {d}", f"{a + b} \\cdot {c} - {d}"
        value = (a + b) * c - d
    sol = (f"Multiplication first: ${expr} = {inner} = {value}$. "
           f"So the value is {_boxed(Fraction(value))}")
    return f"Evaluate ${expr}$.", Fraction(value), sol


def fraction_arithmetic(rng: random.Random) -> Problem:
    """``Compute $\\frac{p}{q} op \\frac{r}{s}$.`` with op in +, -, times, div; reduced answer."""
    x = Fraction(rng.randint(1, 11), rng.randint(2, 12))
    y = Fraction(rng.randint(1, 11), rng.randint(2, 12))
    while x.denominator == 1 or y.denominator == 1:
        x, y = x + Fraction(1, 2), y + Fraction(1, 3)
    op = rng.choice(["+", "-", "\\times", "\\div"])
    value = {"+": x + y, "-": x - y, "\\times": x * y, "\\div": x / y}[op]
    expr = f"{_tex(x)} {op} {_tex(y)}"
    if op in "+-":
        den = math.lcm(x.denominator, y.denominator)
        xn, yn = x.numerator * den // x.denominator, y.numerator * den // y.denominator
        total = xn + yn if op == "+" else xn - yn
        step = (f"\\frac{{{xn}}}{{{den}}} {op} \\frac{{{yn}}}{{{den}}} "
                f"= \\frac{{{total}}}{{{den}}}")
    elif op == "\\times":
        step = f"\\frac{{{x.numerator * y.numerator}}}{{{x.denominator * y.denominator}}}"
    else:
        step = f"{_tex(x)} \\times \\frac{{{y.denominator}}}{{{y.numerator}}}"
    sol = f"${expr} = {step} = {_tex(value)}$ in lowest terms. The answer is {_boxed(value)}"
    return f"Compute ${expr}$. Express your answer in simplest form.", value, sol


def _lin(a: int, b: int) -> str:
    """``a x + b`` as text: ``3x + 7``, ``-x - 2``, ``x``."""
    head = {1: "x", -1: "-x"}.get(a, f"{a}x")
    if b == 0:
        return head
    return f"{head} {'+' if b > 0 else '-'} {abs(b)}"


def linear_equation(rng: random.Random) -> Problem:
    """``Solve for $x$: $a x + b = c x + d$.`` (c may be 0); the solution may be a fraction."""
    a = rng.choice([k for k in range(-9, 10) if k != 0])
    c = rng.choice([0, 0, 0] + [k for k in range(-5, 6) if k not in (0, a)])
    b, d = rng.randint(-40, 40), rng.randint(-40, 40)
    value = Fraction(d - b, a - c)
    rhs = _lin(c, d) if c else str(d)
    sol = (f"Collect $x$ on one side: ${a - c}x = {d - b}$, so $x = {_tex(value)}$. "
           f"The answer is {_boxed(value)}")
    return f"Solve for $x$: ${_lin(a, b)} = {rhs}$.", value, sol


def gcd_lcm(rng: random.Random) -> Problem:
    """Greatest common divisor or least common multiple of two numbers sharing a factor."""
    g = rng.randint(2, 24)
    m, n = rng.randint(2, 15), rng.randint(2, 15)
    a, b = g * m, g * n
    if rng.random() < 0.5:
        value = math.gcd(a, b)
        return (f"What is the greatest common divisor of ${a}$ and ${b}$?", Fraction(value),
                f"Euclid's algorithm on {a} and {b} ends at {value}. "
                f"The answer is {_boxed(Fraction(value))}")
    value = a * b // math.gcd(a, b)
    sol = (f"$\\operatorname{{lcm}}({a},{b}) = {a} \\cdot {b} / \\gcd({a},{b}) = {value}$. "
           f"The answer is {_boxed(Fraction(value))}")
    return f"What is the least common multiple of ${a}$ and ${b}$?", Fraction(value), sol


def percentage(rng: random.Random) -> Problem:
    """``What is $p\\%$ of $n$?``, ``$a$ is what percent of $b$?`` or a price increase/discount."""
    kind = rng.randrange(3)
    if kind == 0:
        p = rng.choice([5, 10, 12, 15, 20, 25, 30, 40, 45, 60, 75, 80, 125])
        n = rng.randint(2, 60) * 4
        value = Fraction(p * n, 100)
        return (f"What is ${p}\\%$ of ${n}$?", value,
                f"${p}\\%$ of ${n}$ is $\\frac{{{p}}}{{100}} \\cdot {n} = {_tex(value)}$. "
                f"The answer is {_boxed(value)}")
    if kind == 1:
        b = rng.choice([8, 20, 25, 40, 50, 80, 120, 160, 200, 250])
        a = rng.randint(1, 2 * b)
        value = Fraction(100 * a, b)
        return (f"${a}$ is what percent of ${b}$?", value,
                f"$\\frac{{{a}}}{{{b}}} \\cdot 100 = {_tex(value)}$, so it is {_tex(value)} percent. "
                f"The answer is {_boxed(value)}")
    price, p = rng.randint(2, 60) * 20, rng.choice([5, 10, 15, 20, 25, 30, 35, 40, 50])
    up = rng.random() < 0.5
    value = Fraction(price * (100 + p if up else 100 - p), 100)
    verb = "increased" if up else "discounted"
    factor = 100 + p if up else 100 - p
    return (f"A jacket costs $\\${price}$. Its price is {verb} by ${p}\\%$. "
            f"What is the new price, in dollars?", value,
            f"The new price is ${price} \\cdot \\frac{{{factor}}}{{100}} = {_tex(value)}$ dollars. "
            f"The answer is {_boxed(value)}")


def mean_of_list(rng: random.Random) -> Problem:
    """Arithmetic mean of 3-6 integers (a fraction when it does not divide)."""
    xs = [rng.randint(-20, 99) for _ in range(rng.randint(3, 6))]
    value = Fraction(sum(xs), len(xs))
    shown = ", ".join(str(x) for x in xs)
    return (f"What is the arithmetic mean of the numbers ${shown}$?", value,
            f"The sum is ${sum(xs)}$ and there are ${len(xs)}$ numbers, so the mean is ${_tex(value)}$. "
            f"The answer is {_boxed(value)}")


def integer_sum(rng: random.Random) -> Problem:
    """Sum of the integers from a to b, or of the first n odd numbers."""
    if rng.random() < 0.5:
        n = rng.randint(3, 60)
        return (f"What is the sum of the first ${n}$ positive odd integers?", Fraction(n * n),
                f"The first $n$ odd numbers add up to $n^2$, here ${n}^2 = {n * n}$. "
                f"The answer is {_boxed(Fraction(n * n))}")
    a = rng.randint(-30, 50)
    b = a + rng.randint(2, 60)
    value = Fraction((a + b) * (b - a + 1), 2)
    return (f"What is the sum of all integers from ${a}$ to ${b}$, inclusive?", value,
            f"There are ${b - a + 1}$ terms with average $\\frac{{{a + b}}}{{2}}$, "
            f"so the sum is ${_tex(value)}$. The answer is {_boxed(value)}")


def word_problem(rng: random.Random) -> Problem:
    """One of four everyday stories; the numbers are chosen so the answer is exact."""
    kind = rng.randrange(4)
    if kind == 0:
        t, c = rng.randint(3, 15), rng.choice([12, 18, 20, 24, 30, 36])
        s = rng.randint(1, t * c)
        value = Fraction(t * c - s)
        return (f"A bakery bakes ${t}$ trays with ${c}$ cookies on each tray and sells ${s}$ cookies. "
                f"How many cookies are left?", value,
                f"It bakes ${t} \\cdot {c} = {t * c}$ cookies, and ${t * c} - {s} = {t * c - s}$ remain. "
                f"The answer is {_boxed(value)}")
    if kind == 1:
        h, k, speed = rng.randint(2, 9), rng.randint(1, 12), rng.randint(20, 90)
        value = Fraction(speed * k)
        return (f"A train travels ${speed * h}$ miles in ${h}$ hours. At the same speed, how many miles does "
                f"it travel in ${k}$ hours?", value,
                f"Its speed is ${speed * h} / {h} = {speed}$ miles per hour, so in ${k}$ hours it goes "
                f"${speed * k}$ miles. The answer is {_boxed(value)}")
    if kind == 2:
        a, m, k = rng.randint(2, 30), rng.randint(2, 5), rng.randint(1, 9)
        value = Fraction(a + m * a + m * a - k)
        return (f"Ann has ${a}$ marbles. Ben has ${m}$ times as many marbles as Ann, and Cara has ${k}$ fewer "
                f"marbles than Ben. How many marbles do the three of them have in total?", value,
                f"Ben has ${m * a}$ and Cara has ${m * a - k}$, so the total is ${a} + {m * a} + {m * a - k} = "
                f"{a + 2 * m * a - k}$. The answer is {_boxed(value)}")
    lee, gap, years = rng.randint(3, 40), rng.randint(1, 30), rng.randint(1, 20)
    total = 2 * lee + gap + 2 * years
    return (f"Sam is ${gap}$ years older than Lee. In ${years}$ years the sum of their ages will be ${total}$. "
            f"How old is Lee now?", Fraction(lee),
            f"Let Lee be $L$: $(L + {years}) + (L + {gap} + {years}) = {total}$, so $2L = {2 * lee}$ and "
            f"$L = {lee}$. The answer is {_boxed(Fraction(lee))}")


FAMILIES: dict[str, Callable[[random.Random], Problem]] = {
    "integer": integer_arithmetic, "order": order_of_operations, "fraction": fraction_arithmetic,
    "linear": linear_equation, "gcdlcm": gcd_lcm, "percent": percentage, "mean": mean_of_list,
    "sum": integer_sum, "word": word_problem,
}


def _record(rid: str, problem: Problem) -> dict:
    text, value, solution = problem
    return {"id": rid, "problem": text, "answer": format_answer(value), "solution": solution}


def sample_records(n: int, seed: int = 0) -> list[dict]:
    """n distinct DeepScaleR-shaped records cycling over :data:`FAMILIES`; id ``ds-<k>-<family>``."""
    rng = random.Random(seed)
    names, out, seen = list(FAMILIES), [], set()
    while len(out) < n:
        family = names[len(out) % len(names)]
        rec = _record(f"ds-{len(out):04d}-{family}", FAMILIES[family](rng))
        if rec["problem"] not in seen:
            seen.add(rec["problem"])
            out.append(rec)
    return out


# --- the demo's easy problems ---------------------------------------------------------------

DEMO_KINDS = ("add", "mul")
# Sums of two numbers up to 30: a 2-layer model pretrained for about a minute answers them
# confidently enough for sampling at temperature 1 (up to 99 it needs ~3x the pretraining).
DEMO_MAX_ADD, DEMO_MAX_MUL = 30, 9


def demo_problem(rng: random.Random, kind: str, max_add: int = DEMO_MAX_ADD,
                 max_mul: int = DEMO_MAX_MUL) -> Problem:
    """``What is a + b?`` (0 <= a, b <= max_add) or ``What is a * b?`` (1 <= a, b <= max_mul)."""
    if kind == "add":
        a, b = rng.randint(0, max_add), rng.randint(0, max_add)
        value, expr = a + b, f"{a} + {b}"
    elif kind == "mul":
        a, b = rng.randint(1, max_mul), rng.randint(1, max_mul)
        value, expr = a * b, f"{a} * {b}"
    else:
        raise ValueError(f"unknown demo problem kind {kind!r}; available: {', '.join(DEMO_KINDS)}")
    return f"What is {expr}?", Fraction(value), f"{expr} = {value}"


def demo_records(n: int, seed: int = 0, kinds: tuple[str, ...] = DEMO_KINDS,
                 **limits: int) -> list[dict]:
    """n demo records (kinds in turn); ``solution`` is the bare equation ``37 + 48 = 85``."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        kind = kinds[i % len(kinds)]
        out.append(_record(f"demo-{i:05d}-{kind}", demo_problem(rng, kind, **limits)))
    return out
