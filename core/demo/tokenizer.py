"""Train a small byte-level BPE tokenizer locally (nothing is downloaded).

The pipeline is exactly the one ``transformers`` rebuilds for a ``qwen2`` model directory
(``AutoTokenizer`` on a saved Qwen2 model constructs ``Qwen2Tokenizer`` from the vocab and
merges with its own normaliser, split rule and decoder): NFC, Qwen2's split regex, byte-level
BPE. So the tokenizer returned here, the one saved, and the one ``AutoTokenizer`` loads next to
the demo model all encode alike. The split rule cuts numbers into single digits.

``<think>``, ``</think>``, ``<answer>``, ``</answer>`` are single *normal* added tokens, so
``decode(..., skip_special_tokens=True)`` keeps them (the reward reads them). BOS, EOS (also the
unknown token, as in Qwen2, so no extra token is added on load) and PAD are special. No
post-processor adds BOS or EOS: a template's ``format_prefix: [["bos_token"]]`` is the only
place BOS comes from.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from tokenizers import (
    AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers,
)

# Qwen2's split rule (transformers' Qwen2Tokenizer.PRETOKENIZE_REGEX), written out so the
# tokenizer does not depend on that class: a number becomes single digits.
SPLIT_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
                 r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
TAG_TOKENS = ("<think>", "</think>", "<answer>", "</answer>")
BOS, EOS, PAD = "<|bos|>", "<|endoftext|>", "<|pad|>"
SPECIAL_TOKENS = (BOS, EOS, PAD)


def _raw_tokenizer() -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    return tok


def train_tokenizer(texts: Iterable[str], vocab_size: int, out_dir: str | Path,
                    special_tokens: tuple[str, str, str] = SPECIAL_TOKENS,
                    tag_tokens: tuple[str, ...] = TAG_TOKENS):
    """Train BPE on ``texts`` and save a ``transformers`` tokenizer to ``out_dir``.

    ``special_tokens`` is ``(bos, eos, pad)``; ``vocab_size`` counts the 256 byte symbols,
    the special and the tag tokens too. Returns the ``PreTrainedTokenizerFast`` that
    ``AutoTokenizer.from_pretrained(out_dir)`` also loads.
    """
    from transformers import PreTrainedTokenizerFast

    bos, eos, pad = special_tokens
    n_fixed = 256 + len(special_tokens) + len(tag_tokens)
    if vocab_size < n_fixed:
        raise ValueError(f"vocab_size {vocab_size} is below the {n_fixed} fixed tokens "
                         f"(256 bytes + {len(special_tokens)} special + {len(tag_tokens)} tags)")
    tok = _raw_tokenizer()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(tag_tokens), special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    # Tags are matched whole as added tokens, not learned by BPE: strip them from the text.
    tok.train_from_iterator((_strip_tags(t, tag_tokens) for t in texts), trainer=trainer)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in tag_tokens])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos, eos_token=eos,
                                   pad_token=pad, unk_token=eos,
                                   padding_side="left", clean_up_tokenization_spaces=False)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(out))
    _portable_class_name(out / "tokenizer_config.json")
    return fast


def _portable_class_name(config_file: Path) -> None:
    """transformers 5 writes ``TokenizersBackend``, a name 4.x lacks; ``PreTrainedTokenizerFast``
    loads the same ``tokenizer.json`` under both."""
    config = json.loads(config_file.read_text(encoding="utf-8"))
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config_file.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def _strip_tags(text: str, tags: tuple[str, ...]) -> str:
    for t in tags:
        text = text.replace(t, " ")
    return text
