"""The generators' answers are exact: each problem is re-solved here from its text alone."""

from __future__ import annotations

import json
import math
import random
import re
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest

from r1zero.demo.arith import (
    FAMILIES, demo_problem, demo_records, format_answer, parse_answer, sample_records,
)

REPO = Path(__file__).resolve().parents[2]
NUM = r"(-?\d+)"
FRAC = r"(-?\\frac\{\d+\}\{\d+\}|-?\d+)"


def _int(s: str) -> int:
    return int(s)


def _solve_linear(lhs: str, rhs: str) -> Fraction:
    def coef(side: str) -> tuple[int, int]:
        m = re.fullmatch(r"(-?\d*)x(?: ([+-]) (\d+))?", side)
        if m is None:
            return 0, int(side)
        a = {"": 1, "-": -1}.get(m.group(1), None)
        a = int(m.group(1)) if a is None else a
        b = int(m.group(3)) * (1 if m.group(2) == "+" else -1) if m.group(2) else 0
        return a, b
    (a, b), (c, d) = coef(lhs), coef(rhs)
    return Fraction(d - b, a - c)


def solve(family: str, p: str) -> Fraction:
    """Re-solve a generated problem from its text (regexes, Fraction arithmetic, no eval)."""
    ops = {"+": lambda x, y: x + y, "-": lambda x, y: x - y, "\\times": lambda x, y: x * y,
           "\\div": lambda x, y: x / y}
    if family == "integer":
        m = re.fullmatch(rf"Compute \${NUM} (\+|-|\\times) \(?{NUM}\)?\$\.", p)
        return Fraction(ops[m.group(2)](_int(m.group(1)), _int(m.group(3))))
    if family == "order":
        m = re.fullmatch(r"Evaluate \$(\()?(\d+) \+ (\d+)\)? \\cdot (\d+) - (\d+)\$\.", p)
        a, b, c, d = (int(m.group(i)) for i in range(2, 6))
        return Fraction((a + b) * c - d if m.group(1) else a + b * c - d)
    if family == "fraction":
        m = re.fullmatch(rf"Compute \${FRAC} (\+|-|\\times|\\div) {FRAC}\$\. Express .*", p)
        return ops[m.group(2)](parse_answer(m.group(1)), parse_answer(m.group(3)))
    if family == "linear":
        m = re.fullmatch(r"Solve for \$x\$: \$(.+) = (.+)\$\.", p)
        return _solve_linear(m.group(1), m.group(2))
    if family == "gcdlcm":
        a, b = map(int, re.findall(r"\$(\d+)\$", p))
        return Fraction(math.gcd(a, b) if "greatest" in p else math.lcm(a, b))
    if family == "percent":
        if p.startswith("What is"):
            pct, n = map(int, re.findall(r"\$(\d+)\\?%?\$", p))
            return Fraction(pct * n, 100)
        if "what percent" in p:
            a, b = map(int, re.findall(r"\$(\d+)\$", p))
            return Fraction(100 * a, b)
        price, pct = map(int, re.findall(r"\$\\?\$?(\d+)\\?%?\$", p))
        return Fraction(price * (100 + pct if "increased" in p else 100 - pct), 100)
    if family == "mean":
        xs = [int(x) for x in re.search(r"\$(.*)\$", p).group(1).split(", ")]
        return Fraction(sum(xs), len(xs))
    if family == "sum":
        nums = [int(x) for x in re.findall(r"\$(-?\d+)\$", p)]
        if "odd" in p:
            return Fraction(sum(2 * k + 1 for k in range(nums[0])))
        return Fraction(sum(range(nums[0], nums[1] + 1)))
    if family == "word":
        n = [int(x) for x in re.findall(r"\$(\d+)\$", p)]
        if "cookies" in p:
            return Fraction(n[0] * n[1] - n[2])
        if "train" in p:
            return Fraction(n[0], n[1]) * n[2]
        if "marbles" in p:
            return Fraction(n[0] + 2 * n[1] * n[0] - n[2])
        gap, years, total = n
        return Fraction(total - 2 * years - gap, 2)
    raise AssertionError(f"no solver for family {family!r}")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_sample_answer_recomputes(seed):
    recs = sample_records(270, seed)
    for rec in recs:
        family = rec["id"].split("-")[2]
        assert parse_answer(rec["answer"]) == solve(family, rec["problem"]), rec
        assert rec["solution"].endswith(f"$\\boxed{{{rec['answer']}}}$"), rec
    assert {r["id"].split("-")[2] for r in recs} == set(FAMILIES)
    assert len({r["problem"] for r in recs}) == len(recs)


def test_sample_answers_use_deepscaler_forms():
    answers = [r["answer"] for r in sample_records(270, 0)]
    assert any(a.startswith("\\frac{") for a in answers)
    assert any(a.startswith("-\\frac{") for a in answers)
    assert any(re.fullmatch(r"-\d+", a) for a in answers)
    for a in answers:   # reduced fractions with denominator > 1, never "\frac{4}{1}" or "2/4"
        q = parse_answer(a)
        assert format_answer(q) == a
        m = re.search(r"\\frac\{(\d+)\}\{(\d+)\}", a)
        if m:
            assert math.gcd(int(m.group(1)), int(m.group(2))) == 1 and int(m.group(2)) > 1


@pytest.mark.parametrize("value, text", [
    (Fraction(17), "17"), (Fraction(-4), "-4"), (Fraction(3, 4), "\\frac{3}{4}"),
    (Fraction(-10, 4), "-\\frac{5}{2}"), (0, "0")])
def test_format_answer(value, text):
    assert format_answer(value) == text
    assert parse_answer(text) == Fraction(value)


@pytest.mark.parametrize("bad", ["3/4", "\\frac{3}{0x}", "1e3", "", "__import__('os')"])
def test_parse_answer_rejects_other_text(bad):
    with pytest.raises(ValueError, match="not an integer"):
        parse_answer(bad)


def test_generators_are_deterministic():
    assert sample_records(40, 5) == sample_records(40, 5)
    assert sample_records(40, 5) != sample_records(40, 6)
    assert demo_records(30, 1) == demo_records(30, 1)


def test_demo_records_are_exact():
    for rec in demo_records(400, seed=3):
        m = re.fullmatch(r"What is (\d+) ([+*]) (\d+)\?", rec["problem"])
        a, b = int(m.group(1)), int(m.group(3))
        assert int(rec["answer"]) == (a + b if m.group(2) == "+" else a * b)
        assert rec["solution"] == f"{a} {m.group(2)} {b} = {rec['answer']}"


def test_demo_problem_limits_and_unknown_kind():
    rng = random.Random(0)
    for _ in range(200):
        text, value, _ = demo_problem(rng, "mul", max_mul=5)
        a, b = map(int, re.findall(r"\d+", text))
        assert 1 <= a <= 5 and 1 <= b <= 5 and value == a * b
    with pytest.raises(ValueError, match="available: add, mul"):
        demo_problem(rng, "pow")


def test_committed_sample_matches_the_script():
    path = REPO / "examples" / "data" / "deepscaler_sample.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert len(rows) >= 240
    assert all(list(r) == ["problem", "answer", "solution", "id"] for r in rows)
    script = REPO / "examples" / "data" / "make_sample.py"
    done = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
