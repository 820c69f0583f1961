"""The tiny random Qwen2 the end-to-end tests train (2 layers, hidden 64), built from a tokenizer."""

from __future__ import annotations

from pathlib import Path


def save_tiny_qwen2(tokenizer, out_dir: Path, max_positions: int = 256, seed: int = 0) -> Path:
    """Save a seeded random 2-layer Qwen2 sized to ``tokenizer`` into ``out_dir``; returns it."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    cfg = Qwen2Config(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=max_positions, tie_word_embeddings=True,
                      bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                      pad_token_id=tokenizer.pad_token_id)
    Qwen2ForCausalLM(cfg).save_pretrained(str(out_dir))
    return Path(out_dir)
