"""Bounds an answer must satisfy before any parser sees it.

A math parser evaluates integer arithmetic eagerly: sympy turns ``\\binom{10^9}{5 \\cdot 10^8}``,
``(10^9)!`` or ``\\Gamma(10^9)`` into the exact integer while *parsing*, in C calls that no
signal interrupts. Such answers are therefore refused here, from the text alone, and only
ever compared as strings. ``complexity_reason(text)`` and ``explosion_reason(key)`` return a
reason or None:

- ``complexity_reason`` (the sanitized text): length, bracket nesting, ``|`` count, matrix
  cells, list items, digit runs, power towers and huge integer exponents
  (``_power_reason``), literal factorials.
- ``explosion_reason`` (the ``canonical`` key: ``\\dbinom``/``\\tbinom`` are ``\\binom``,
  ``\\left``, spaces and font wrappers are gone, so ``\\operatorname{Gamma}`` is ``Gamma``):
  the arguments of factorials (``n!``, ``n!!``, ``(expr)!``, ``10^9!``), binomials
  (``\\binom``, ``{n \\choose k}``, ``binomial(n,k)``), Gamma (``\\Gamma``, ``Gamma``,
  ``gamma``, ``factorial(n)``), ``\\exp`` (towers written ``\\exp(\\exp(…))``), the ranges of ``\\sum`` / ``\\prod`` (nested ones multiply),
  and every exponent that is an expression (``2^{10^4 \\cdot 10^4}``), a numeric power with
  too many digits, or a sum raised to a power with too many terms once expanded
  (``(x+y+z)^{60}``).

An argument's size is its value from ``math_eval`` (the safe grammar evaluator, variables
set to 2.5); an argument outside that grammar counts as huge when it holds a power, a
factorial, another fast-growing function (``\\Gamma(\\Gamma(10))``) or a number of more than
three digits, else as at most 10^(its digit count).
"""

from __future__ import annotations

import math
import re

from r1zero.plugins.rewards.math_eval import CTX, evaluate, tokens, variables

MAX_PARSE_CHARS = 300        # longest answer a parser may see (the corpus tops out at ~90;
                             # math-verify's parser needs ~15 ms per tuple of a long list)
MAX_DEPTH = 24               # bracket nesting
MAX_BARS = 12                # "|" (absolute values nest without brackets)
MAX_EXPONENT = 10_000        # integer exponent
MAX_POWER_DIGITS = 3000      # digits of a numeric power (7^{2024} has 1711)
MAX_FACTORIAL = 1000         # n!, \Gamma(n)
MAX_BINOMIAL = 10_000        # n of \binom{n}{k}
MAX_TERMS = 1000             # terms of all \sum / \prod ranges together (multiplied)
MAX_EXPANSION = 40           # terms of (a+b+...)^n expanded: (x+1)^{39}, (x+y+z)^{7}
MAX_ITEMS = 40               # items of a top-level list
MAX_CELLS = 40               # "&" of matrices
MAX_DIGITS = 300             # one run of digits
HUGE = math.inf

# -- complexity of the text ---------------------------------------------------------------
_POW_RE = re.compile(r"\^|\*\*")
_TOKEN_RE = re.compile(r"-?\d+|\\?[A-Za-z]+|.", re.S)
_BASE_RE = re.compile(r"(\d+)\s*[)}]?\s*$")
_DIGITS_RE = re.compile(r"\d+")
_FACTORIAL_RE = re.compile(r"(\d+)\s*!")
_LOG10_MAX_EXPONENT = math.log10(MAX_EXPONENT)


def _operand(text: str, at: int) -> int:
    """End of the power operand starting at ``at``: a braced or parenthesised group, else one token."""
    n = len(text)
    while at < n and text[at] in " \t\n":
        at += 1
    if at < n and text[at] in "{(":
        opener, closer, depth = text[at], "}" if text[at] == "{" else ")", 0
        for i in range(at, n):
            if text[i] == opener:
                depth += 1
            elif text[i] == closer:
                depth -= 1
                if depth == 0:
                    return i + 1
        return n
    m = _TOKEN_RE.match(text, at)
    return m.end() if m else at


def _power_reason(text: str, depth: int = 0) -> str | None:
    """Why the powers in ``text`` could explode when evaluated, or None.

    ``depth`` counts enclosing exponents. An integer exponent over MAX_EXPONENT is refused
    anywhere; inside an exponent, ``b^e`` with integer ``b, e`` is refused when it exceeds
    MAX_EXPONENT (so ``10^{10^{10}}`` and ``9**9**9`` are refused, ``2^{2^{10}}`` and
    ``e^{-x^2}`` are not); towers deeper than three are refused outright.
    """
    if depth > 2:
        return "power tower deeper than 3"
    for m in _POW_RE.finditer(text):
        end = first_end = _operand(text, m.end())
        while (chain := _POW_RE.match(text, end)) is not None:    # a**b**c is a**(b**c)
            end = _operand(text, chain.end())
        operand = text[m.end():end].strip()
        if end == first_end and operand[:1] in "{(" and operand[-1:] in "})":
            operand = operand[1:-1]
        if _POW_RE.search(operand):
            reason = _power_reason(operand, depth + 1)
            if reason:
                return reason
            continue
        digits = operand.strip().lstrip("-+")
        if not digits.isdigit():
            continue
        if len(digits) > 6 or int(digits) > MAX_EXPONENT:
            return f"exponent {digits[:20]} over {MAX_EXPONENT}"
        base = _BASE_RE.search(text, 0, m.start())
        if depth and base and int(digits) * math.log10(max(int(base.group(1)[-7:]), 1)) \
                > _LOG10_MAX_EXPONENT:
            return f"exponent {base.group(1)[:10]}^{digits} over {MAX_EXPONENT}"
    return None


def _depth(text: str) -> int:
    depth = worst = 0
    for ch in text:
        if ch in "{([":
            depth += 1
            worst = max(worst, depth)
        elif ch in "})]":
            depth = max(0, depth - 1)
    return worst


def _top_level_commas(text: str) -> list[int]:
    depth, out = 0, []
    for i, ch in enumerate(text):
        if ch in "{([":
            depth += 1
        elif ch in "})]":
            depth = max(0, depth - 1)
        elif ch == "," and depth == 0:
            out.append(i)
    return out


def complexity_reason(text: str) -> str | None:
    """Why ``text`` must not reach a parser, or None when it is within every bound."""
    if len(text) > MAX_PARSE_CHARS:
        return f"{len(text)} characters (limit {MAX_PARSE_CHARS})"
    if _depth(text) > MAX_DEPTH:
        return f"nesting deeper than {MAX_DEPTH}"
    if text.count("|") > MAX_BARS:
        return f"more than {MAX_BARS} '|'"
    if text.count("&") > MAX_CELLS:
        return f"more than {MAX_CELLS} matrix cells"
    if text.count(",") > MAX_ITEMS and len(_top_level_commas(text)) > MAX_ITEMS:
        return f"a list of more than {MAX_ITEMS} items"
    if any(len(d) > MAX_DIGITS for d in _DIGITS_RE.findall(text)):
        return f"a number with more than {MAX_DIGITS} digits"
    if "^" in text or "**" in text:
        reason = _power_reason(text)
        if reason:
            return reason
    for m in _FACTORIAL_RE.finditer(text):
        if len(m.group(1)) > 5 or int(m.group(1)) > MAX_FACTORIAL:
            return f"factorial of {m.group(1)[:20]}"
    return None


# -- sizes of arguments (on canonical keys) -----------------------------------------------
_OPEN, _CLOSE = "{([", "})]"
_COMMAND_RE = re.compile(r"\\[A-Za-z]+")
_SIZE_POINT = {chr(c): CTX.mpf(2.5) for c in range(ord("a"), ord("z") + 1)}
_SIZE_POINT.update({chr(c): CTX.mpf(2.5) for c in range(ord("A"), ord("Z") + 1)})
_SIZE_POINT["e"] = +CTX.e
# functions that grow faster than any power, in an argument math_eval cannot size
_GROWS_RE = re.compile(r"\\(?:Gamma|binom|dbinom|tbinom|choose|prod|sum|exp|zeta|uparrow)|"
                       r"amma|factorial|binomial")


def group_end(key: str, at: int) -> int:
    """Index after the bracket that closes the one at ``at`` (any type, as ``math_keys``)."""
    depth = 0
    for i in range(at, len(key)):
        if key[i] in _OPEN:
            depth += 1
        elif key[i] in _CLOSE:
            depth -= 1
            if depth == 0:
                return i + 1
    return len(key)


def group_start(key: str, end: int) -> int:
    """Index of the bracket that opens the one closing at ``end - 1``."""
    depth = 0
    for i in range(end - 1, -1, -1):
        if key[i] in _CLOSE:
            depth += 1
        elif key[i] in _OPEN:
            depth -= 1
            if depth == 0:
                return i
    return 0


def operand_after(key: str, at: int) -> int:
    """End of the argument starting at ``at``: a group, a command, a digit run or one char."""
    if at >= len(key):
        return at
    if key[at] in _OPEN:
        return group_end(key, at)
    m = _COMMAND_RE.match(key, at) or _DIGITS_RE.match(key, at)
    return m.end() if m else at + 1


def operand_before(key: str, end: int) -> int:
    """Start of the operand of a postfix ``!`` at ``end``, a power's base included."""
    start = end
    while start > 0 and key[start - 1] == "!":          # 10!!! is ((10!)!)!
        start -= 1
    if start == 0:
        return 0
    if key[start - 1] in _CLOSE:
        start = group_start(key, start)
    elif key[start - 1].isdigit():
        while start > 0 and (key[start - 1].isdigit() or key[start - 1] == "."):
            start -= 1
    else:
        start -= 1
    if start > 0 and key[start - 1] == "^":             # 10^9! is (10^9)!
        return operand_before(key, start - 1)
    return start


def size(arg: str) -> float:
    """An upper estimate of ``|arg|`` (variables at 2.5); HUGE when it may be huge."""
    arg = arg.strip()
    while len(arg) >= 2 and arg[0] in _OPEN and group_end(arg, 0) == len(arg):
        arg = arg[1:-1]
    if not arg:
        return 0.0
    if arg.endswith("!"):
        inner = size(arg[:-1])
        return math.gamma(inner + 1) if inner <= 170 else HUGE
    toks = tokens(arg)
    if toks is not None and not (variables(toks) - set(_SIZE_POINT)):
        values = evaluate(toks, _SIZE_POINT)
        if values:
            worst = max(abs(v) for v in values)
            return HUGE if CTX.isinf(worst) else float(min(worst, CTX.mpf(1e300)))
    digit_runs = _DIGITS_RE.findall(arg)
    if "^" in arg or "!" in arg or _GROWS_RE.search(arg) or any(len(d) > 3 for d in digit_runs):
        return HUGE
    return 10.0 ** min(sum(len(d) for d in digit_runs), 300)


# -- explosive sites ----------------------------------------------------------------------
_GAMMA_RE = re.compile(r"\\Gamma|(?<![A-Za-z\\])(?:Gamma|gamma|factorial)(?![A-Za-z])")
_EXP_RE = re.compile(r"\\exp(?![A-Za-z])")
_BINOM_RE = re.compile(r"\\binom|(?<![A-Za-z\\])binomial(?![A-Za-z])")
_BIG_OP_RE = re.compile(r"\\(?:prod|sum|coprod)(?![A-Za-z])(?:\\(?:no)?limits)?")
_HINT_RE = re.compile(r"!|\\binom|\\choose|amma|factorial|binomial|\\prod|\\sum|\\coprod|"
                      r"\\exp|\^")


def _args(key: str, at: int, count: int) -> list[str]:
    """``count`` arguments after ``at`` (``\\binom{a}{b}``, ``\\binom12``, ``binomial(a,b)``);
    a script right after the name (``\\Gamma^2(x)``) is skipped."""
    while key[at:at + 1] in ("^", "_"):
        at = operand_after(key, at + 1)
    if key[at:at + 1] == "(":
        inner = key[at + 1:group_end(key, at) - 1]
        return inner.split(",") if count > 1 else [inner]
    out = []
    for _ in range(count):
        end = operand_after(key, at)
        out.append(key[at:end])
        at = end
    return out


def _choose_args(key: str, at: int) -> list[str]:
    """The two sides of ``\\choose`` at ``at``, up to the enclosing brackets."""
    depth, start = 0, 0
    for i in range(at - 1, -1, -1):
        if key[i] in _CLOSE:
            depth += 1
        elif key[i] in _OPEN:
            if depth == 0:
                start = i + 1
                break
            depth -= 1
    end = group_end(key, start - 1) - 1 if start else len(key)
    return [key[start:at], key[at + len("\\choose"):end]]


def _scripts(key: str, at: int) -> tuple[str | None, str | None, int]:
    """``_{lo}`` and ``^{hi}`` after a big operator, in either order, and where ``^`` is."""
    lo = hi = None
    hat = -1
    for _ in range(2):
        if key[at:at + 1] not in ("_", "^"):
            break
        end = operand_after(key, at + 1)
        if key[at] == "_":
            lo = key[at + 1:end]
        else:
            hi, hat = key[at + 1:end], at
        at = end
    return lo, hi, hat


def _big_operator_terms(key: str) -> float:
    """Terms of every ``\\sum`` / ``\\prod`` with a finite range, multiplied together."""
    terms = 1.0
    for m in _BIG_OP_RE.finditer(key):
        lo, hi, _ = _scripts(key, m.end())
        if hi is None or "\\infty" in hi:
            continue
        lo_value = size(lo.split("=", 1)[1]) if lo and "=" in lo else 0.0
        terms *= size(hi) + lo_value + 1
    return terms


def _expansion(base: str, exponent: float) -> float:
    """Terms of ``base^exponent`` expanded, when ``base`` is a sum of ``t`` terms."""
    inner = base[1:-1] if base[0] in _OPEN else base
    depth, terms = 0, 1
    for i, ch in enumerate(inner):
        if ch in _OPEN:
            depth += 1
        elif ch in _CLOSE:
            depth -= 1
        elif ch in "+-" and depth == 0 and i > 0 and inner[i - 1] not in "^_":
            terms += 1
    if terms == 1 or exponent <= 1:
        return 1.0
    if exponent > MAX_EXPONENT:
        return HUGE
    return float(math.comb(int(exponent) + terms - 1, terms - 1))


def _power_sites(key: str) -> str | None:
    """Exponents that are expressions, numeric powers with too many digits, big polynomials
    (not the upper limit of a sum, not an infinite exponent)."""
    limits = {_scripts(key, m.end())[2] for m in _BIG_OP_RE.finditer(key)}
    for m in re.finditer(r"\^", key):
        exp_end = operand_after(key, m.end())
        if m.start() in limits or "\\infty" in key[m.end():exp_end]:
            continue
        exponent = size(key[m.end():exp_end])
        if exponent > MAX_EXPONENT:
            return f"exponent {key[m.end():exp_end][:30]} over {MAX_EXPONENT}"
        start = operand_before(key, m.start()) if m.start() else 0
        base = key[start:m.start()]
        if not base:
            continue
        base_size = size(base)
        toks = tokens(base)
        symbolic = toks is None or bool(variables(toks) - {"e"})
        if not symbolic and base_size > 1 \
                and exponent * math.log10(base_size) > MAX_POWER_DIGITS:
            return f"power {key[start:exp_end][:30]} over {MAX_POWER_DIGITS} digits"
        if symbolic and _expansion(base, exponent) > MAX_EXPANSION:
            return f"power {key[start:exp_end][:30]} of a sum"
    return None


def explosion_reason(key: str) -> str | None:
    """Why evaluating ``key`` could explode (see module doc), or None."""
    if not _HINT_RE.search(key):
        return None
    for m in re.finditer(r"!", key):
        if size(key[operand_before(key, m.start()):m.start()]) > MAX_FACTORIAL:
            return f"factorial of {key[:m.start() + 1][-30:]}"
    for m in _GAMMA_RE.finditer(key):
        if size(_args(key, m.end(), 1)[0]) > MAX_FACTORIAL:
            return f"{m.group()} of a large argument"
    for m in _EXP_RE.finditer(key):                     # \exp(\exp(\exp(100)))
        if size(_args(key, m.end(), 1)[0]) > MAX_EXPONENT:
            return "exponential of a large argument"
    for m in _BINOM_RE.finditer(key):
        if any(size(a) > MAX_BINOMIAL for a in _args(key, m.end(), 2)):
            return "binomial of a large argument"
    for m in re.finditer(r"\\choose(?![A-Za-z])", key):
        if any(size(a) > MAX_BINOMIAL for a in _choose_args(key, m.start())):
            return "binomial of a large argument"
    if _big_operator_terms(key) > MAX_TERMS:
        return f"sums or products over more than {MAX_TERMS} terms"
    return _power_sites(key) if "^" in key else None
