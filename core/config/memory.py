"""Parameter counts from a model's architecture facts, and per-die memory of a layout.

Pure arithmetic on the HF config keys (``hidden_size``, ``num_attention_heads``, ...; MLA and
MoE keys for DeepSeek-V3). The byte model, per die of the fullest pipeline stage:

    parameters   model dtype (2 bytes for bf16): dense part / tp, routed experts / expert ranks
    gradients    fp32 (4 bytes): megatron DDP accumulates and reduces gradients in fp32
    optimizer    fp32 master + Adam m, v = 12 bytes; / dp (dense) and / (dp / ep) (experts)
                 with the distributed optimizer; with ``actor.swap_optimizer`` it lives on the
                 host and 1/SWAP_CHUNKS of it is on the die during the step
    activations  s*b*h*(10 + 24/tp) bytes per layer (Korthikanti et al. 2022, flash attention so
                 no s^2 term), or 2*s*b*h per layer plus one full layer with full recompute;
                 x micro-batches in flight (1F1B: pp on the first stage); plus the fp32 logits
                 (2 * s*b*V/tp * 4 bytes) on the last stage.

Routing replay (``algorithm.routing_replay``) keeps the rollout's expert choices with the
samples, on the host: tokens x MoE layers x top_k int16 (``ROUTE_BYTES``) per step.

It is an estimate: allocator fragmentation, communication buffers and MTP layers are not in it.
"""

from __future__ import annotations

from typing import Any, Mapping

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
GRAD_BYTES, OPTIM_BYTES = 4, 12
SWAP_CHUNKS = 16      # actor.swap_optimizer: the optimizer step brings the state over in 16 parts
ROUTE_BYTES = 2       # an expert number of a recorded route (int16, engines.routing)


def layer_params(arch: Mapping[str, Any]) -> dict[str, int]:
    """Parameters of one layer: ``attention``, ``dense_mlp``, ``routed`` (all experts of a MoE
    layer), ``shared`` (shared experts + router) and ``norms``."""
    h, heads = arch["hidden_size"], arch["num_attention_heads"]
    if arch.get("kv_lora_rank"):                         # multi-head latent attention
        qk = arch["qk_nope_head_dim"] + arch["qk_rope_head_dim"]
        q_rank, kv_rank = arch.get("q_lora_rank"), arch["kv_lora_rank"]
        q = h * q_rank + q_rank + q_rank * heads * qk if q_rank else h * heads * qk
        kv = h * (kv_rank + arch["qk_rope_head_dim"]) + kv_rank + \
            kv_rank * heads * (arch["qk_nope_head_dim"] + arch["v_head_dim"])
        attention = q + kv + heads * arch["v_head_dim"] * h
    else:
        hd = arch.get("head_dim") or h // heads
        kv_heads = arch.get("num_key_value_heads") or heads
        bias = (heads + 2 * kv_heads) * hd if arch.get("attention_bias", arch.get(
            "model_type") == "qwen2") else 0
        attention = h * heads * hd + 2 * h * kv_heads * hd + heads * hd * h + bias
    routed = shared = 0
    n_experts = arch.get("n_routed_experts") or arch.get("num_experts") or 0
    if n_experts:
        moe_inter = arch.get("moe_intermediate_size") or arch["intermediate_size"]
        routed = n_experts * 3 * h * moe_inter
        shared = (arch.get("n_shared_experts") or 0) * 3 * h * moe_inter + h * n_experts
    return {"attention": attention, "dense_mlp": 3 * h * arch["intermediate_size"],
            "routed": routed, "shared": shared, "norms": 2 * h}


def is_moe_layer(arch: Mapping[str, Any], index: int) -> bool:
    """DeepSeek-V3: the first ``first_k_dense_replace`` layers are dense, the rest MoE."""
    if not (arch.get("n_routed_experts") or arch.get("num_experts")):
        return False
    return index >= (arch.get("first_k_dense_replace") or 0)


def total_params(arch: Mapping[str, Any], num_layers: int) -> int:
    p, h, v = layer_params(arch), arch["hidden_size"], arch["vocab_size"]
    body = sum(p["attention"] + p["norms"] + (p["routed"] + p["shared"] if is_moe_layer(arch, i)
                                              else p["dense_mlp"]) for i in range(num_layers))
    head = 0 if arch.get("tie_word_embeddings") else v * h
    return body + v * h + head + h


def routed_params(arch: Mapping[str, Any], num_layers: int) -> int:
    """Parameters of the routed experts of every MoE layer."""
    routed = layer_params(arch)["routed"]
    return sum(routed for i in range(num_layers) if is_moe_layer(arch, i))


def routes_bytes(arch: Mapping[str, Any], num_layers: int, tokens: int) -> dict[str, int]:
    """The recorded routes of ``tokens`` response tokens: ``moe_layers`` x ``top_k`` int16
    per token (0 bytes for a dense model)."""
    moe = sum(is_moe_layer(arch, i) for i in range(num_layers))
    k = arch.get("num_experts_per_tok") or 0
    return {"moe_layers": moe, "top_k": k, "bytes": tokens * moe * k * ROUTE_BYTES}


def stage_bytes(arch: Mapping[str, Any], stages: list[int], stage: int, *, tp: int,
                expert_ranks: int, dp: int, ep: int, dtype_bytes: int,
                distributed_optimizer: bool) -> dict[str, int]:
    """Parameter, gradient and optimizer bytes on one die of pipeline ``stage``."""
    p, h, v = layer_params(arch), arch["hidden_size"], arch["vocab_size"]
    first = sum(stages[:stage])
    dense = expert = 0.0
    for i in range(first, first + stages[stage]):
        dense += (p["attention"] + p["shared"]) / tp + p["norms"]
        if is_moe_layer(arch, i):
            expert += p["routed"] / expert_ranks
        else:
            dense += p["dense_mlp"] / tp
    if stage == 0:
        dense += v * h / tp
    if stage == len(stages) - 1 and not (arch.get("tie_word_embeddings") and len(stages) == 1):
        dense += v * h / tp + h
    params = dense + expert
    dense_shards, expert_shards = (dp, max(1, dp // ep)) if distributed_optimizer else (1, 1)
    return {"params": int(params), "param_bytes": int(params * dtype_bytes),
            "grad_bytes": int(params * GRAD_BYTES),
            "optimizer_bytes": int(OPTIM_BYTES * (dense / dense_shards + expert / expert_shards))}


def activation_bytes(arch: Mapping[str, Any], stages: list[int], stage: int, *, tp: int,
                     seq: int, micro_batch: int, in_flight: int, recompute: str,
                     dtype_bytes: int) -> int:
    """Activations held on one die of ``stage`` at the peak of the 1F1B schedule."""
    h, v = arch["hidden_size"], arch["vocab_size"]
    sbh = seq * micro_batch * h
    full_layer = sbh * (10 + 24 / tp) * dtype_bytes / 2
    layers = stages[stage]
    kept = layers * sbh * dtype_bytes + full_layer if recompute == "full" else layers * full_layer
    total = kept * in_flight
    if stage == len(stages) - 1:
        total += 2 * seq * micro_batch * v / tp * 4
    return int(total)
