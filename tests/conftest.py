"""Shared fixtures. ``tiny_tokenizer``: a byte-level BPE tokenizer trained here in
milliseconds and saved as a ``transformers`` tokenizer (nothing is downloaded)."""

from __future__ import annotations

import pytest

TINY_BOS, TINY_EOS, TINY_PAD = "<|bos|>", "<|eos|>", "<|pad|>"
_CORPUS = [
    "A conversation between User and Assistant. The user asks a question, and the Assistant "
    "solves it. The reasoning process and answer are enclosed within <think> </think> and "
    "<answer> </answer> tags. Put your final answer within \\boxed{}.",
    "What is 12 + 30? Compute the value of x if 3x = 21. Find the sum of all integers.",
    "Let f(x) = x^2 + 1. The answer is \\frac{3}{4}, 17, 42 or \\sqrt{2}.",
]


@pytest.fixture(scope="session")
def tiny_tokenizer(tmp_path_factory) -> str:
    """Path of a ~400-token byte-level BPE tokenizer with BOS/EOS/PAD; encodes any text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=[TINY_BOS, TINY_EOS, TINY_PAD],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=TINY_BOS, eos_token=TINY_EOS,
                                   pad_token=TINY_PAD)
    out = tmp_path_factory.mktemp("tiny_tokenizer")
    fast.save_pretrained(str(out))
    return str(out)
