"""The demo corpus: the R1 format is a minority, its answers are checked, prompts render as the
trainer renders them with DEMO_TEMPLATE."""

from __future__ import annotations

import random
import re

import pytest

from r1zero.demo.corpus import (
    DEFAULT_MIX, DEMO_TEMPLATE, continuation, documents, render_demo_prompt,
)
from r1zero.plugins.rewards.answer_format import last_boxed, strict_format_ok
from r1zero.data.templates import Template


def test_r1_format_is_a_minority_with_mostly_right_answers():
    docs = documents(3000, seed=0)
    fmt = [(p, c) for p, c in docs if strict_format_ok(c)]
    share = len(fmt) / len(docs)
    # styles r1 (8%) + r1_wrong (3%) pass; r1_tail fails on the text after </answer>
    assert 0.07 < share < 0.15, share
    right = 0
    for prompt, cont in fmt:
        a, op, b = re.search(r"What is (\d+) ([+*]) (\d+)\?", prompt).groups()
        value = int(a) + int(b) if op == "+" else int(a) * int(b)
        right += last_boxed(cont) == str(value)
    assert 0.6 < right / len(fmt) < 0.9     # the r1_wrong documents carry wrong answers


def test_every_style_and_unknown_style():
    rng = random.Random(0)
    passing = {s for s in DEFAULT_MIX if strict_format_ok(continuation(rng, s, "3 + 4", 7))}
    assert passing == {"r1", "r1_wrong"}
    want = " <think>3 + 4 = 7</think><answer>\\boxed{7}</answer>"
    assert continuation(rng, "r1", "3 + 4", 7) == want
    with pytest.raises(ValueError, match="available: bare, equation"):
        continuation(rng, "poem", "3 + 4", 7)


def test_prompt_is_what_the_template_renders(tiny_tokenizer):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_tokenizer)
    template = Template.from_entry(DEMO_TEMPLATE)
    rendered = template.render("What is 37 + 48?", tokenizer=tok)
    assert rendered == tok.bos_token + render_demo_prompt("What is 37 + 48?")
    assert rendered.endswith("\nQ: What is 37 + 48?\nA:")
    assert len(render_demo_prompt("").split()) <= 20    # short, unlike deepseek3_r1's ~90 words
    assert template.stop_strings(tok) == [tok.eos_token]


def test_documents_are_deterministic():
    assert documents(50, seed=3) == documents(50, seed=3)
    assert documents(50, seed=3) != documents(50, seed=4)
