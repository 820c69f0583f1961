"""Fixtures of the megatron-core tests. megatron-core runs on CPU ranks only with the
redirections of ``cpu_redirect``; they are applied inside the worker processes these tests
spawn (``workers.join``), never in the pytest process and never by r1zero itself."""

from __future__ import annotations

import pytest


def save_tiny_llm(out, layers: int = 4, tied: bool = True, seed: int = 0):
    """A seeded random Qwen2 (hidden 64, 4 heads, 2 kv heads, vocab 96) saved to ``out``."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    cfg = Qwen2Config(vocab_size=96, hidden_size=64, intermediate_size=128,
                      num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=64, tie_word_embeddings=tied)
    Qwen2ForCausalLM(cfg).save_pretrained(str(out))
    return out


@pytest.fixture(scope="session")
def tiny_llm(tmp_path_factory):
    """The 4-layer tiny Qwen2 with tied embeddings."""
    return save_tiny_llm(tmp_path_factory.mktemp("tiny_llm"))


def save_tiny_deepseek(out, yarn: bool = False, tokenizer=None):
    """A seeded random 3-layer DeepSeek-V3 (first layer dense, then MoE: 4 routed experts top-2
    in 2 groups, 1 shared expert; MLA with q/kv lora ranks 24/16, rope dim 4; vocab 96) saved
    to ``out``; every weight, the router and its expert bias drawn at random (HF initialises the
    router and bias to zero, which would route every token alike). With ``tokenizer`` the
    vocabulary and special tokens are the tokenizer's."""
    import torch
    from transformers import DeepseekV3Config, DeepseekV3ForCausalLM

    torch.manual_seed(0)
    rope = {"rope_type": "default", "rope_theta": 10000.0}
    if yarn:
        rope = {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0, "mscale": 1.0,
                "mscale_all_dim": 1.0, "original_max_position_embeddings": 16,
                "beta_fast": 32.0, "beta_slow": 1.0}
    special = {} if tokenizer is None else {
        "vocab_size": len(tokenizer), "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id,
        "max_position_embeddings": 256}
    cfg = DeepseekV3Config(**{"vocab_size": 96, "max_position_embeddings": 64, **special},
                           hidden_size=64, intermediate_size=96,
                           moe_intermediate_size=32, num_hidden_layers=3,
                           first_k_dense_replace=1, num_attention_heads=4, num_key_value_heads=4,
                           n_routed_experts=4, num_experts_per_tok=2, n_shared_experts=1,
                           n_group=2, topk_group=1, q_lora_rank=24, kv_lora_rank=16,
                           qk_nope_head_dim=8, qk_rope_head_dim=4, v_head_dim=8,
                           tie_word_embeddings=False, rope_scaling=rope)
    model = DeepseekV3ForCausalLM(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = 0.1 * torch.randn_like(p)
            p.copy_(1.0 + noise if "norm" in name else noise)
        for name, b in model.named_buffers():
            if name.endswith("e_score_correction_bias"):
                b.copy_(0.1 * torch.randn_like(b))
    model.save_pretrained(str(out))
    return out


@pytest.fixture(scope="session")
def tiny_deepseek(tmp_path_factory):
    return save_tiny_deepseek(tmp_path_factory.mktemp("tiny_deepseek"))


@pytest.fixture(scope="session")
def tiny_deepseek_yarn(tmp_path_factory):
    return save_tiny_deepseek(tmp_path_factory.mktemp("tiny_deepseek_yarn"), yarn=True)
