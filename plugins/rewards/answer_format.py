"""The R1-Zero response format: ``<think>…</think><answer>… \\boxed{…} …</answer>``.

Two format rules and the box extraction the ``base_acc`` scorer builds on. Everything here is
linear in the response length (no backtracking regex over model output), so a 200 KB
response or 10,000 repeated tags cost milliseconds.

- ``strict_format_ok``: the rule the benchmark labels follow. After stripping surrounding
  whitespace, each of ``<think>``, ``</think>``, ``<answer>``, ``</answer>`` occurs exactly
  once and in that order, the response starts with ``<think>`` and ends with ``</answer>``,
  and the answer block holds a brace-balanced ``\\boxed{…}`` (spaces before ``{`` allowed).
- ``last_boxed_mindspeed``: MindSpeed-RL's extraction of the answer, exactly.
- ``mindspeed_format_ok``: MindSpeed-RL's ``base_acc`` regex
  ``<think>.*</think>.*<answer>.*\\\\boxed\\{.*\\}.*</answer>`` (full match, DOTALL, no strip),
  decided by an equivalent left-to-right scan instead of the backtracking regex.
"""

from __future__ import annotations

import re

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"
TAGS = (THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE)

# "\boxed" then optional spaces then "{"; "\boxedx" or "\boxed 7" are not boxes.
_BOX_RE = re.compile(r"\\boxed[ \t\r\n]*\{")
_BRACE_SCAN_RE = re.compile(r"\\.|[{}]", re.S)
_RAW_BRACE_RE = re.compile(r"[{}]")


def strict_format_ok(response: str) -> bool:
    """True iff ``response`` follows the strict R1-Zero rule (module docstring)."""
    s = response.strip()
    if not (s.startswith(THINK_OPEN) and s.endswith(ANSWER_CLOSE)):
        return False
    if any(s.count(tag) != 1 for tag in TAGS):
        return False
    pos = [s.find(tag) for tag in TAGS]
    if pos != sorted(pos):
        return False
    block = s[pos[2] + len(ANSWER_OPEN):pos[3]]
    return last_boxed(block) is not None


def mindspeed_format_ok(response: str) -> bool:
    """``re.fullmatch(r"<think>.*</think>.*<answer>.*\\\\boxed\\{.*\\}.*</answer>", s, re.DOTALL)``.

    Literals separated by ``.*`` match iff they occur in order without overlapping, so the
    leftmost occurrence of each after the previous one decides; the final ``</answer>`` must
    be the suffix and start after the last literal ends.
    """
    if not (response.startswith(THINK_OPEN) and response.endswith(ANSWER_CLOSE)):
        return False
    limit = len(response) - len(ANSWER_CLOSE)
    at = len(THINK_OPEN)
    if at > limit:
        return False
    for literal in (THINK_CLOSE, ANSWER_OPEN, "\\boxed{", "}"):
        found = response.find(literal, at, limit)
        if found < 0:
            return False
        at = found + len(literal)
    return True


def answer_region(response: str) -> str:
    """The text the answer is read from, whatever the format verdict.

    After the last ``<answer>`` up to the next ``</answer>`` (or the end); without
    ``<answer>``, after the last ``</think>``; without either, the whole response.
    """
    start = response.rfind(ANSWER_OPEN)
    if start >= 0:
        start += len(ANSWER_OPEN)
        end = response.find(ANSWER_CLOSE, start)
        return response[start:] if end < 0 else response[start:end]
    start = response.rfind(THINK_CLOSE)
    return response if start < 0 else response[start + len(THINK_CLOSE):]


def matching_braces(text: str) -> dict[int, int]:
    """Index of each ``{`` -> index of its matching ``}`` (unmatched ones are absent).

    One pass with a stack over the braces and escapes only (a regex skips the rest at C
    speed); ``\\{`` and ``\\}`` are escaped braces and do not count (a backslash escapes
    exactly the next character, so ``\\\\{`` is a line break then a brace).
    """
    pairs: dict[int, int] = {}
    stack: list[int] = []
    for m in _BRACE_SCAN_RE.finditer(text):
        ch = m.group()
        if ch == "{":
            stack.append(m.start())
        elif ch == "}" and stack:
            pairs[stack.pop()] = m.start()
    return pairs


def last_boxed(text: str) -> str | None:
    """Content of the last brace-balanced ``\\boxed{…}`` in ``text``; None if there is none.

    "Last" is by start position, so ``\\boxed{\\boxed{42}}`` gives ``42`` (as mathruler's
    ``extract_boxed_content`` does). An empty box gives ``""``.
    """
    if "\\boxed" not in text:
        return None
    starts = [m.end() - 1 for m in _BOX_RE.finditer(text)]
    if not starts:
        return None
    pairs = matching_braces(text)
    for brace in reversed(starts):
        close = pairs.get(brace)
        if close is not None:
            return text[brace + 1:close].strip()
    return None


def last_boxed_mindspeed(response: str) -> str:
    """MindSpeed-RL's answer, as its ``base_acc`` extracts it (mathruler's ``extract_boxed_content``).

    After the last literal ``\\boxed{`` anywhere in the response (no space allowed before
    ``{``), every ``{`` and ``}`` counts — escaped ones too, so ``\\boxed{\\left\\{ x \\right.}``
    is not closed by its ``}`` — and the first ``}`` that closes more than it opened ends the answer,
    which is stripped of surrounding whitespace. Without a ``\\boxed{``, or when it is never
    closed, the answer is the four-letter string ``"None"``, compared with the gold like any
    other answer (so it is right only against a gold of ``None``).
    """
    start = response.rfind("\\boxed{")
    if start < 0:
        return "None"
    start += len("\\boxed{")
    depth = 0
    for m in _RAW_BRACE_RE.finditer(response, start):
        depth += 1 if m.group() == "{" else -1
        if depth < 0:
            return response[start:m.start()].strip()
    return "None"
