"""A letter at the end of an answer is a variable, not a unit to drop.

math-verify's LaTeX normalisation (latex2sympy2_extended, ``units=True``) removes a trailing
word of its unit list when it follows a digit, a closing brace or a space. The list holds
single letters (t, s, m, h, g, d, c, l, o) and letter pairs (bc, ab, st, ...), so
``\\sin t`` parses as ``\\sin``, ``x + t`` as ``x +``, ``2t`` as ``2`` and ``a + bc`` as
``a +``: ``\\sin t`` "equals" ``\\sin s`` and ``x + t`` "equals" ``x + m``, while ``\\sin t``
differs from ``\\sin(t)``. Two guards, both here (math-verify itself is not patched):

- ``protect_letters`` (before parsing): a trailing run of bare letters that is not a unit is
  braced -- ``\\sin {t}``, ``x + {t}``, ``2{t}`` -- which the unit rule leaves alone and the
  parser reads as the same expression. Units stay units: anything in ``\\text``, ``\\mathrm``,
  ``\\mbox``... (``5\\text{ cm}``, ``\\frac{1}{3}\\text{ m}``), a word of three or more letters
  (``10 meters``), two letters after a number (``5 cm``, ``\\frac{1}{2}km``) and one letter
  after a space after digits (``5 m``, ``2.5 s``). One letter straight after digits or after
  a fraction is a product (``2t``, ``\\frac{1}{2} t``).
- ``keeps_variables`` (after parsing): each side's parse must keep the letters its text names
  outside wrappers and commands. When a side lost some and the two texts name different
  letters, the pair is not equal whatever ``verify`` says (a structural check: no parse may
  make ``t`` and ``s`` the same answer by dropping them).

Only bounded regexes and set operations on short strings; nothing is evaluated.
"""

from __future__ import annotations

import re
from typing import Any

from r1zero.plugins.rewards.math_normalize import canonical, parse_number

# wrappers whose content is words or fixed symbols, not variables (\mathbb{R}, \text{ cm})
_WRAPPED_RE = re.compile(r"\\(?:text\w*|math(?:rm|bb|bf|it|sf|cal|scr|frak)|mbox|operatorname|"
                         r"begin|end|boldsymbol|bm)\s*\{[^{}]*\}")
_COMMAND_RE = re.compile(r"\\[A-Za-z]+")
_LETTER_RE = re.compile(r"[A-Za-z]")
_SINGLE_RE = re.compile(r"(?<![A-Za-z])[A-Za-z](?![A-Za-z])")
# the value side of a relation or a ratio: "AB=4", "|AB|=1", "x\approx 11", "S_1:S=7:32"
_RELATION_RE = re.compile(r"=|\\approx|\\sim|\\equiv|:")
_DECIMAL_RE = re.compile(r"[-+]?\d+(?:\.\d+)?")
_TRAILING_RE = re.compile(r"(?<![\\A-Za-z])([A-Za-z]+)\s*$")
CONSTANTS = frozenset("ei")        # Euler's number and the imaginary unit are no variables


def _names(text: str) -> frozenset[str]:
    """Single letters outside wrappers and commands, right of the last relation: words
    (``and``, ``or``), names (``AB``, ``CD``) and column specs (``{cc}``) are no variables."""
    last = None
    for last in _RELATION_RE.finditer(text):
        pass
    if last is not None:
        text = text[last.end():]
    for _ in range(3):                          # nested wrappers, from the inside out
        text, n = _WRAPPED_RE.subn(" ", text)
        if not n:
            break
    return frozenset(_SINGLE_RE.findall(_COMMAND_RE.sub(" ", text))) - CONSTANTS


def _trailing(text: str) -> tuple[str, str, bool] | None:
    """(text before, trailing letters, whether they are a unit) when ``text`` ends in bare
    letters after a digit, a ``}`` or a space -- where math-verify's unit rule looks."""
    m = _TRAILING_RE.search(text)
    if m is None:
        return None
    head, run = text[:m.start()], m.group(1)
    rest = head.rstrip()
    spaced = rest != head
    if not rest or not (rest[-1].isdigit() or rest[-1] == "}" or spaced):
        return None
    if len(run) >= 3:
        unit = True
    elif len(run) == 2:
        unit = parse_number(canonical(rest)) is not None
    else:
        unit = spaced and _DECIMAL_RE.fullmatch(rest) is not None
    return head, run, unit


def letters(text: str) -> frozenset[str]:
    """The variable letters a LaTeX answer names: outside text/font wrappers, commands and a
    trailing unit; ``e`` and ``i`` excluded. ``letters(r"\\sin t + x_1")`` -> {t, x}."""
    end = _trailing(text)
    return _names(end[0] if end and end[2] else text)


def protect_letters(text: str) -> str:
    """``text`` with a trailing run of variable letters braced so that math-verify's unit
    rule keeps it: ``\\sin t`` -> ``\\sin {t}``, ``x + t`` -> ``x + {t}``; units unchanged."""
    end = _trailing(text)
    if end is None or end[2]:
        return text
    return f"{end[0]}{{{end[1]}}}"


def parsed_letters(parsed: list[Any]) -> frozenset[str] | None:
    """The letters a math-verify parse kept: its first result's free symbols and undefined
    functions (a sympy object) or the letters of its fallback string; None when unknown."""
    if not parsed:
        return None
    first = parsed[0]
    if isinstance(first, str):
        return _names(first)
    try:
        from sympy.core.function import AppliedUndef  # sympy: heavy, math-verify's dependency
        names = [str(s) for s in first.free_symbols]
        names += [type(f).__name__ for f in first.atoms(AppliedUndef)]
    except (AttributeError, TypeError):
        return None
    return frozenset(_LETTER_RE.findall(" ".join(names)))


def keeps_variables(pred: str, pred_parsed: list[Any], gold: str, gold_parsed: list[Any]) -> bool:
    """False when a side's parse dropped letters its text names and the two texts name
    different letters (then no verdict on the parses can be trusted); True otherwise."""
    named_p, named_g = letters(pred), letters(gold)
    if named_p == named_g:
        return True
    kept_p, kept_g = parsed_letters(pred_parsed), parsed_letters(gold_parsed)
    lost_p = kept_p is not None and bool(named_p - kept_p)
    lost_g = kept_g is not None and bool(named_g - kept_g)
    return not (lost_p or lost_g)
