"""The vLLM rollout engine's config -> argument functions (pure; no vLLM needed). The engine
itself runs in tests/plugins/backends/test_cuda.py on a GPU with vLLM (skipped elsewhere)."""

from pathlib import Path

import pytest
import torch

from r1zero.config.load import load_config
from r1zero.engines.vllm import (flatten_outputs, llm_kwargs, request_seeds, sampling_kwargs,
                                 use_vllm)

RECIPE = Path(__file__).resolve().parents[2] / "examples" / "r1_zero_deepseek_671b.yaml"


def test_llm_kwargs_of_the_seed_recipe():
    # the 671B recipe's rollout (MindSpeed-RL's): TP 2, max_num_seqs 64, max_model_len 3072,
    # max_num_batched_tokens 1024, bf16, gpu_memory_utilization 0.75, expert parallel on
    assert llm_kwargs(load_config(RECIPE)) == {
        "model": "./model_from_hf/deepseek3-base", "tokenizer": "./model_from_hf/deepseek3-base",
        "load_format": "dummy", "dtype": "bfloat16", "trust_remote_code": False,
        "tensor_parallel_size": 2, "gpu_memory_utilization": 0.75, "max_num_seqs": 64,
        "max_model_len": 3072, "enforce_eager": False, "seed": 1234,
        "max_num_batched_tokens": 1024, "enable_expert_parallel": True}


def test_llm_kwargs_defaults_for_a_small_model():
    cfg = load_config(None, ["model.path=/m/qwen", "rollout.max_prompt_length=256",
                             "rollout.max_response_length=512", "rollout.pipeline_parallel=2"])
    kw = llm_kwargs(cfg)
    assert kw["model"] == kw["tokenizer"] == "/m/qwen"
    assert kw["max_model_len"] == 768                      # 256 + 512
    assert kw["pipeline_parallel_size"] == 2
    assert "enable_expert_parallel" not in kw and "max_num_batched_tokens" not in kw


def test_sampling_kwargs_of_the_seed_recipe():
    # the 671B recipe's sampling (MindSpeed-RL's): temperature 1, top_p 1, top_k -1, min_p 0, max_tokens 2048
    assert sampling_kwargs(load_config(RECIPE), 32, [1], seed=7) == {
        "n": 32, "temperature": 1.0, "top_p": 1.0, "top_k": -1, "min_p": 0.0,
        "max_tokens": 2048, "stop_token_ids": [1], "detokenize": False, "seed": 7}
    assert "seed" not in sampling_kwargs(load_config(RECIPE), 4, [])


def test_request_seeds_follow_the_generator():
    a = request_seeds(torch.Generator().manual_seed(3), 5)
    assert a == request_seeds(torch.Generator().manual_seed(3), 5)     # same state, same seeds
    assert a != request_seeds(torch.Generator().manual_seed(4), 5)
    assert len(set(a)) == 5 and all(0 <= s < 2**31 - 1 for s in a)
    g = torch.Generator().manual_seed(3)
    first = request_seeds(g, 5)
    assert request_seeds(g, 5) != first                                # the stream advances
    assert request_seeds(None, 5) is None


def test_flatten_outputs_group_after_group():
    per_prompt = [[([5, 2], "stop"), ([6, 6, 6], "length")],
                  [([2], "stop"), ([], "length")]]
    index, responses, finished = flatten_outputs(per_prompt)
    assert index == [0, 0, 1, 1]
    assert responses == [[5, 2], [6, 6, 6], [2], []]
    assert finished == [True, False, True, False]


def test_use_vllm_is_a_choice_not_a_probe():
    assert use_vllm("vllm", None, "cuda") and not use_vllm("hf", None, "cuda")
