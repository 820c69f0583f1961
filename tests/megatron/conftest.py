"""Fixtures of the megatron-core tests. megatron-core runs on CPU ranks only with the
redirections of ``cpu_redirect``; they are applied inside the worker processes these tests
spawn (``workers.join``), never in the pytest process and never by r1zero itself."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_llm(tmp_path_factory):
    """A seeded random 4-layer Qwen2 (hidden 64, 4 heads, 2 kv heads, vocab 96, tied)."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                      tie_word_embeddings=True)
    out = tmp_path_factory.mktemp("tiny_llm")
    Qwen2ForCausalLM(cfg).save_pretrained(str(out))
    return out
