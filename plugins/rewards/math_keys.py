"""Reading the top level of a ``canonical`` answer key: relations, lists, assignments.

Keys have no spaces and normalised relation names (``\\leq``, ``\\geq``, ``\\neq``), so a
bracket counter plus one regex finds what sits outside every bracket. Brackets are counted
without regard to their type, which keeps half-open intervals such as ``[a,b)`` balanced.
"""

from __future__ import annotations

import re

RELATION = r"\\(?:leq|geq|neq|approx|in|notin|subset|subseteq)(?![A-Za-z])|[=<>]"
_RELATION_SCAN_RE = re.compile(r"[{(\[]|[})\]]|" + RELATION)
_COMMA_SCAN_RE = re.compile(r"[{(\[]|[})\]]|,")
_SUBSCRIPT_RE = re.compile(r"_(?:\{[^{}]*\}|\\?[A-Za-z0-9])")
# What a left-hand side made only of names looks like: x, f(x), (p,q), V:V, |AB|, \frac{NO}{BO}
_NAMES_RE = re.compile(r"[A-Za-z\\{}(),:|'*/]+")
_NOT_NAMES_RE = re.compile(r"[-+^\d]|\\(?:sqrt|sum|int|pm)")


def top_level(key: str, scan: re.Pattern) -> list[re.Match]:
    """Matches of ``scan``'s non-bracket alternatives that lie outside every bracket."""
    found, depth = [], 0
    for m in scan.finditer(key):
        tok = m.group()
        if tok in "{([":
            depth += 1
        elif tok in "})]":
            depth = max(0, depth - 1)
        elif depth == 0:
            found.append(m)
    return found


def relations(key: str) -> list[re.Match]:
    """Relation operators (``=``, ``<``, ``\\leq``, ``\\in`` …) outside any bracket."""
    return top_level(key, _RELATION_SCAN_RE)


def split_commas(key: str) -> list[str]:
    """``key`` split at commas outside any bracket (``"(1,2),(3,4)"`` -> two items)."""
    parts, start = [], 0
    for m in top_level(key, _COMMA_SCAN_RE):
        parts.append(key[start:m.start()])
        start = m.end()
    parts.append(key[start:])
    return parts


def is_names(lhs: str) -> bool:
    """Whether a left-hand side is made of names only (an assignment, not an equation)."""
    bare = _SUBSCRIPT_RE.sub("", lhs)
    return bool(bare) and _NAMES_RE.fullmatch(bare) is not None \
        and _NOT_NAMES_RE.search(bare) is None


def assignment(key: str) -> tuple[str, str] | None:
    """``(lhs, rhs)`` when ``key`` is ``names = value`` with one top-level relation, an ``=``."""
    rel = relations(key)
    if len(rel) != 1 or rel[0].group() != "=":
        return None
    lhs, rhs = key[:rel[0].start()].strip(), key[rel[0].end():].strip()
    return (lhs, rhs) if rhs and is_names(re.sub(r"\s+", "", lhs)) else None


def is_equation_gold(key: str) -> bool:
    """``a+z=0``: one ``=``, a left side that is not just names, no list around it."""
    rel = relations(key)
    if len(rel) != 1 or rel[0].group() != "=" or "," in key or ";" in key:
        return False
    lhs = _SUBSCRIPT_RE.sub("", key[:rel[0].start()])
    return _NOT_NAMES_RE.search(lhs) is not None


def encloses(key: str) -> bool:
    """Whether ``key[0]`` opens a bracket that ``key[-1]`` closes (of any type)."""
    if len(key) < 2 or key[0] not in "{([" or key[-1] not in "})]":
        return False
    depth = 0
    for i, ch in enumerate(key):
        if ch in "{([":
            depth += 1
        elif ch in "})]":
            depth -= 1
        if depth == 0:
            return i == len(key) - 1
    return False


def strip_outer(key: str, pairs: str = "()") -> str:
    """``key`` without one enclosing pair of brackets ``pairs``, if that pair encloses all of it."""
    if key[:1] == pairs[0] and key[-1:] == pairs[1] and encloses(key):
        return key[1:-1]
    return key
