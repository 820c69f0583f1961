"""The demo's prompt template and its pretraining corpus.

A document is ``BOS + prompt + continuation + EOS`` where the prompt is a demo problem rendered
with :data:`DEMO_TEMPLATE` and the continuation is drawn from a mix in which the full R1 format
``<think>...</think><answer>...\\boxed{...}</answer>`` is a minority, and sometimes carries a
wrong answer -- so the pretrained model seldom follows the format (as a base model before
R1-Zero's RL), yet can do the arithmetic in every style it has seen.
"""

from __future__ import annotations

import random

from r1zero.demo.arith import DEMO_KINDS, demo_problem, format_answer
from r1zero.demo.template import DEMO_INSTRUCTION, DEMO_TEMPLATE  # noqa: F401 - re-exported

# Share of each continuation style in the corpus; "r1" and "r1_wrong" are the only ones that
# pass the format rule, "r1_tail" fails it only by text after </answer>.
DEFAULT_MIX = {
    "bare": 0.22, "equation": 0.22, "sentence": 0.16, "ramble": 0.12,
    "partial": 0.14, "r1": 0.08, "r1_wrong": 0.03, "r1_tail": 0.03,
}


def render_demo_prompt(content: str) -> str:
    """The user slot of :data:`DEMO_TEMPLATE` with ``{{content}}`` filled (BOS not included)."""
    return DEMO_TEMPLATE["format_user"]["slots"][0].replace("{{content}}", content)


def _wrong(rng: random.Random, value: int) -> int:
    return max(0, value + rng.choice([-10, -2, -1, 1, 2, 10]))


def continuation(rng: random.Random, style: str, expr: str, value: int) -> str:
    """One response to ``What is <expr>?`` in ``style`` (a key of :data:`DEFAULT_MIX`)."""
    ans = str(value)
    thought = f"{expr} = {ans}"
    r1 = f" <think>{thought}</think><answer>\\boxed{{{ans}}}</answer>"
    if style == "bare":
        return " " + ans
    if style == "equation":
        return f" {expr} = {ans}"
    if style == "sentence":
        return rng.choice([f" The answer is {ans}.", f" It is {ans}.", f" {expr} is {ans}."])
    if style == "ramble":
        return rng.choice([f" Let me see. {thought}. So {ans}.",
                           f" We compute {expr}. It is {ans}.", f" Hmm, {expr} is {ans}. Yes."])
    if style == "partial":
        return rng.choice([f" <think>{thought}</think> {ans}", f" <answer>{ans}</answer>",
                           f" \\boxed{{{ans}}}", f" <think>{thought}</think><answer>{ans}</answer>",
                           f" {expr} = {ans}<answer>\\boxed{{{ans}}}</answer>"])
    if style == "r1":
        return r1
    if style == "r1_wrong":
        bad = str(_wrong(rng, value))
        return f" <think>{expr} = {bad}</think><answer>\\boxed{{{bad}}}</answer>"
    if style == "r1_tail":
        return r1 + " Done."
    raise ValueError(f"unknown continuation style {style!r}; available: {', '.join(DEFAULT_MIX)}")


def documents(n: int, seed: int, mix: dict[str, float] | None = None,
              kinds: tuple[str, ...] = DEMO_KINDS, **limits: int) -> list[tuple[str, str]]:
    """n ``(prompt, continuation)`` pairs: prompt = :func:`render_demo_prompt` of a demo problem
    (kinds in turn, ``limits`` as in :func:`r1zero.demo.arith.demo_problem`), continuation in
    a style drawn from ``mix``."""
    mix = mix or DEFAULT_MIX
    rng = random.Random(seed)
    styles, weights = list(mix), list(mix.values())
    out = []
    for i in range(n):
        text, value, solution = demo_problem(rng, kinds[i % len(kinds)], **limits)
        expr = solution.split(" = ")[0]
        style = rng.choices(styles, weights)[0]
        out.append((render_demo_prompt(text), continuation(rng, style, expr, int(value))))
    return out


def tokenizer_texts(seed: int = 0, n: int = 2000) -> list[str]:
    """Text the demo tokenizer is trained on: corpus documents plus the instruction itself."""
    docs = [p + c for p, c in documents(n, seed)]
    return [DEMO_INSTRUCTION] + docs + [format_answer(k) for k in range(200)]
