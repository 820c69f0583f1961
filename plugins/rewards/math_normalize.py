"""Text-level work on answers before (or instead of) a math parser sees them.

- ``sanitize``: drop control characters, replace lone surrogates, spell unicode math
  (``½ √ ² ° − ≥ π``, full-width digits) as LaTeX, so the parser and the string key agree.
- ``canonical``: a string key; equal keys mean equal answers under the labelling
  conventions of the benchmark labels (spacing, ``\\left``, ``\\dfrac``, text and font
  wrappers, degrees, percent, trailing period, a bare choice letter).
- ``parse_number``: exact ``Fraction`` for plain integers, decimals and simple fractions.

Nothing here evaluates text: only ``str`` methods, bounded regexes and ``Fraction`` on
validated digit strings.
"""

from __future__ import annotations

import re
from fractions import Fraction

MAX_NUMBER_DIGITS = 400      # digits parse_number turns into a Fraction

# control characters, lone surrogates, and invisible format characters (zero-width spaces
# and joiners, bidirectional overrides, BOM): "4\u200b2" reads as 42
_CONTROL_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\u200b-\u200f"
                         "\u202a-\u202e\u2060-\u2064\ufeff]")
_SUPERSCRIPTS = dict(zip("⁰¹²³⁴⁵⁶⁷⁸⁹⁻⁺", "0123456789-+"))
_SUPERSCRIPT_RE = re.compile("[⁰¹²³⁴⁵⁶⁷⁸⁹⁻⁺]+")
_SQRT_RE = re.compile(r"√\s*(\d+(?:\.\d+)?|[A-Za-z]|\{)")
_VULGAR = {"½": (1, 2), "⅓": (1, 3), "⅔": (2, 3), "¼": (1, 4), "¾": (3, 4), "⅕": (1, 5),
           "⅖": (2, 5), "⅗": (3, 5), "⅘": (4, 5), "⅙": (1, 6), "⅚": (5, 6), "⅛": (1, 8),
           "⅜": (3, 8), "⅝": (5, 8), "⅞": (7, 8)}
_SYMBOLS = {
    "−": "-", "‐": "-", "‑": "-", "–": "-", "×": r"\times ", "÷": r"\div ", "·": r"\cdot ",
    "⋅": r"\cdot ", "π": r"\pi ", "∞": r"\infty ", "°": r"^\circ", "±": r"\pm ", "∓": r"\mp ",
    "≤": r"\leq ", "⩽": r"\leq ", "≥": r"\geq ", "⩾": r"\geq ", "≠": r"\neq ",
    "≈": r"\approx ", "∈": r"\in ", "∪": r"\cup ", "∩": r"\cap ", "∅": r"\emptyset ",
    "ℝ": r"\mathbb{R}", "′": "'", "″": "''", "α": r"\alpha ", "β": r"\beta ", "γ": r"\gamma ",
    "δ": r"\delta ", "θ": r"\theta ", "λ": r"\lambda ", "μ": r"\mu ", "σ": r"\sigma ",
    "φ": r"\phi ", "ω": r"\omega ", "\u3000": " ", "\u00a0": " ",
    "€": "", "£": "", "¥": "", "₹": "",         # currency signs go, as "\$" does
}
_TRANSLATE = {ord(k): v for k, v in _SYMBOLS.items()}
_TRANSLATE.update({c: c - 0xFEE0 for c in range(0xFF01, 0xFF5F)})   # full-width ASCII
_TRANSLATE.update({ord(k): rf"\frac{{{a}}}{{{b}}}" for k, (a, b) in _VULGAR.items()})


def sanitize(text: str) -> str:
    """Control and invisible format characters and lone surrogates removed; unicode math
    spelled as LaTeX."""
    text = _CONTROL_RE.sub("", text)
    if text.isascii():
        return text
    text = _SUPERSCRIPT_RE.sub(lambda m: "^{" + "".join(_SUPERSCRIPTS[c] for c in m.group()) + "}",
                               text)
    text = _SQRT_RE.sub(lambda m: r"\sqrt{" if m.group(1) == "{" else r"\sqrt{%s}" % m.group(1),
                        text)
    return text.replace("√", r"\sqrt").translate(_TRANSLATE)


# -- canonical string key -----------------------------------------------------------------
_WRAPPERS = (r"\\(?:text|textbf|textit|textrm|mathrm|mathbf|mathit|mathsf|mathcal|mathbb|"
             r"mathscr|mathfrak|boldsymbol|bm|mbox|operatorname|displaystyle)\s*\{([^{}]*)\}")
_WRAPPER_RE = re.compile(_WRAPPERS)
# "\quad \text{and} \quad" between items; bounded repeats keep the scan linear
_CONNECTIVE_RE = re.compile(r"(?:\\q?quad|[\s,;]){0,6}\\text\{\s*(?:and|or)\s*\}"
                            r"(?:\\q?quad|[\s,;]){0,6}")
_DROP_RE = re.compile(r"\\left\b|\\right\b|\\[bB]igg?[lr]?\b|\\displaystyle\b|\\limits\b|"
                      r"\\[,!;:> ]|\\q?quad\b|~|\^\s*\{\\circ\}|\^\s*\\circ\b|\\circ\b|"
                      r"\\degree\b|\\%|%|\\\$|\$")
_SHORT_FRAC_RE = re.compile(r"\\frac\s*(\d|\{[^{}]*\})\s*(\d|\{[^{}]*\})")
_SHORT_SQRT_RE = re.compile(r"\\sqrt\s*(\d)")
_CHOICE_RE = re.compile(r"\(?([A-Z])\)?")
# A whole answer that is one number with thousands separators: "7,425,000", "-1,000.5 m",
# "1 000 000". Inside a list or interval ("(12,102)", "32, 349") a comma separates items.
_THOUSANDS_RE = re.compile(r"[-+]?[1-9]\d{0,2}(?:(?:,\d{3})+|(?: \d{3})+)(?=\.\d|[^\d,. ]|$)")
_LATEX_THOUSANDS_RE = re.compile(r"(?<=\d)(?:,\\!\s*|\{,\})(?=\d{3})")     # 16,\!386 and 1{,}000
_COMMAND_SPACE_RE = re.compile(r"(\\[A-Za-z]+)\s+(?=[A-Za-z])")
_RELATION_ALIAS = {r"\le": r"\leq", r"\ge": r"\geq", r"\ne": r"\neq", r"\leqslant": r"\leq",
                   r"\geqslant": r"\geq", r"\lt": "<", r"\gt": ">", "<=": r"\leq", ">=": r"\geq",
                   "!=": r"\neq"}
_RELATION_ALIAS_RE = re.compile(r"\\(?:leqslant|geqslant|le|ge|ne|lt|gt)(?![A-Za-z])|<=|>=|!=")


def _whole_number_separators(s: str) -> str:
    m = _THOUSANDS_RE.match(s)
    if m is None or "," in s[m.end():]:
        return s
    return m.group().replace(",", "").replace(" ", "") + s[m.end():]


def canonical(text: str) -> str:
    """String key for the fast path: equal keys => equivalent answers (see module doc)."""
    s = text.strip()
    if "\\text" in s:
        s = _CONNECTIVE_RE.sub(";", s)
    for _ in range(4):          # unwrap nested wrappers from the inside out
        s, n = _WRAPPER_RE.subn(r"\1", s)
        if not n:
            break
    s = s.replace(r"\dfrac", r"\frac").replace(r"\tfrac", r"\frac").replace(r"\cfrac", r"\frac")
    s = s.replace(r"\dbinom", r"\binom").replace(r"\tbinom", r"\binom")
    s = _RELATION_ALIAS_RE.sub(lambda m: _RELATION_ALIAS[m.group()], s)
    s = s.replace("\\\\", "\x03")          # a row break "\\" is not "\" + "\ "
    s = _LATEX_THOUSANDS_RE.sub(",", s)                                 # 16,\!386 and 1{,}000
    s = _DROP_RE.sub(" ", s).strip()
    s = _whole_number_separators(s)
    s = re.sub(r"(?<=\d)\s+(?=\d)", "\x01", s)      # keep "3 1/2" apart from "31/2"
    s = _COMMAND_SPACE_RE.sub("\\1\x01", s)          # "\leq x" must not become "\leqx"
    s = re.sub(r"\s+", "", s).replace("\x01", " ").replace("\x03", "\\\\")
    s = _SHORT_FRAC_RE.sub(lambda m: r"\frac{%s}{%s}" % (m.group(1).strip("{}"),
                                                      m.group(2).strip("{}")), s)
    s = _SHORT_SQRT_RE.sub(r"\\sqrt{\1}", s)
    s = s.rstrip(".")
    if s.endswith("\\") and not s.endswith("\\\\"):         # a stray trailing backslash
        s = s[:-1]
    choice = _CHOICE_RE.fullmatch(s)
    return choice.group(1) if choice else s


# -- exact numbers ------------------------------------------------------------------------
_NUMBER_RE = re.compile(r"([-+]?)(?:(\d+)?(\.\d+)?)")
_FRACTION_RE = re.compile(r"([-+]?)(?:\\frac\{(-?\d+)\}\{(\d+)\}|(-?\d+)/(\d+))")


def parse_number(key: str) -> tuple[Fraction, bool] | None:
    """``canonical`` key -> (exact value, written with a decimal point) or None.

    Accepts ``-12``, ``.5``, ``-3.25`` (``canonical`` already dropped thousands commas),
    ``\\frac{3}{4}``, ``-\\frac{3}{4}``, ``3/4``. Anything else is None.
    """
    if not key or len(key) > MAX_NUMBER_DIGITS:
        return None
    m = _NUMBER_RE.fullmatch(key)
    if m and (m.group(2) or m.group(3)):
        sign = -1 if m.group(1) == "-" else 1
        whole = m.group(2) or "0"
        return sign * Fraction(whole + (m.group(3) or "")), m.group(3) is not None
    m = _FRACTION_RE.fullmatch(key)
    if m:
        num, den = (m.group(2), m.group(3)) if m.group(2) is not None else (m.group(4), m.group(5))
        if int(den) == 0:
            return None
        sign = -1 if m.group(1) == "-" else 1
        return sign * Fraction(int(num), int(den)), False
    return None
