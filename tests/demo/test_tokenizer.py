"""The locally trained tokenizer: loads with AutoTokenizer, round-trips, keeps R1 tags whole."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from r1zero.demo.arith import sample_records
from r1zero.demo.corpus import tokenizer_texts
from r1zero.demo.tokenizer import BOS, EOS, PAD, TAG_TOKENS, train_tokenizer

REPO = Path(__file__).resolve().parents[2]
R1_RESPONSE = "<think> 37 + 48 = 85 </think><answer> \\boxed{85} </answer>"


@pytest.fixture(scope="module")
def demo_tok(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo_tok")
    train_tokenizer(tokenizer_texts(0, n=400), 300, out)
    return AutoTokenizer.from_pretrained(str(out))


def test_special_tokens_and_no_automatic_bos(demo_tok):
    assert (demo_tok.bos_token, demo_tok.eos_token, demo_tok.pad_token) == (BOS, EOS, PAD)
    assert len({demo_tok.bos_token_id, demo_tok.eos_token_id, demo_tok.pad_token_id}) == 3
    assert len(demo_tok) <= 300
    ids = demo_tok("What is 3 + 4?")["input_ids"]
    assert demo_tok.bos_token_id not in ids and demo_tok.eos_token_id not in ids
    # BOS written as text (a template's [["bos_token"]]) becomes the one BOS id
    assert demo_tok(BOS + "Q", add_special_tokens=False)["input_ids"][0] == demo_tok.bos_token_id


def test_tags_are_single_normal_tokens(demo_tok):
    for tag in TAG_TOKENS:
        ids = demo_tok(tag, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1, tag
        assert tag not in demo_tok.all_special_tokens
    ids = demo_tok(R1_RESPONSE, add_special_tokens=False)["input_ids"]
    toks = demo_tok.convert_ids_to_tokens(ids)
    assert all(tag in toks for tag in TAG_TOKENS)
    # the reward decodes with skip_special_tokens=True: tags survive, BOS/EOS go
    framed = [demo_tok.bos_token_id] + ids + [demo_tok.eos_token_id, demo_tok.pad_token_id]
    assert demo_tok.decode(framed, skip_special_tokens=True) == R1_RESPONSE


def test_round_trip_and_single_digit_tokens(demo_tok):
    texts = [r["problem"] + "\n" + r["solution"] for r in sample_records(60, 4)]
    texts += ["  spaces\tand\nnewlines  ", "unicode: ½ ∑ <｜User｜> é", "1234567890 -0.25"]
    for text in texts:
        assert demo_tok.decode(demo_tok(text, add_special_tokens=False)["input_ids"]) == text
    multi_digit = [t for t in demo_tok.get_vocab() if len(re.findall(r"\d", t)) > 1]
    assert multi_digit == []


def test_vocab_size_below_fixed_tokens_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="below the 263 fixed tokens"):
        train_tokenizer(["abc"], 100, tmp_path)


def test_committed_example_tokenizer():
    path = REPO / "examples" / "tokenizer"
    size = sum(f.stat().st_size for f in path.iterdir() if f.is_file())
    assert size < 200_000, f"examples/tokenizer/ is {size} bytes"
    tok = AutoTokenizer.from_pretrained(str(path))
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == (BOS, EOS, PAD)
    sample = REPO / "examples" / "data" / "deepscaler_sample.jsonl"
    rows = [json.loads(x) for x in sample.read_text().splitlines()]
    for row in rows[:50]:
        for field in ("problem", "answer", "solution"):
            ids = tok(row[field], add_special_tokens=False)["input_ids"]
            assert tok.decode(ids, skip_special_tokens=True) == row[field]
    for tag in TAG_TOKENS + ("<｜User｜>", "<｜Assistant｜>"):
        assert len(tok(tag, add_special_tokens=False)["input_ids"]) == 1, tag
    # trained on the sample data, so it compresses it: well under one token per character
    text = "\n".join(r["solution"] for r in rows)
    assert len(tok(text)["input_ids"]) < 0.5 * len(text)
