"""DeepSeek-V3 in megatron-core terms: multi-latent attention (MLA), MoE layers with shared
experts after ``first_k_dense_replace`` dense layers, and the HF <-> mcore weight mapping.

Config (``facts`` / ``config_kwargs``), each HF key to its megatron-core field:

    q_lora_rank, kv_lora_rank, v_head_dim -> the same names (MLATransformerConfig)
    qk_nope_head_dim / qk_rope_head_dim   -> qk_head_dim / qk_pos_emb_head_dim
    rope_parameters (default | yarn)      -> rope_type "rope" | "yarn" (factor, mscale,
                                             mscale_all_dim, original_max_position_embeddings,
                                             beta_fast, beta_slow)
    n_routed_experts, num_experts_per_tok -> num_moe_experts, moe_router_topk
    moe_intermediate_size (x n_shared_experts) -> moe_ffn_hidden_size
                                             (moe_shared_expert_intermediate_size)
    first_k_dense_replace                 -> moe_layer_freq [0]*k + [1]*(layers - k)
    routed_scaling_factor                 -> moe_router_topk_scaling_factor
    sigmoid scores + e_score_correction_bias -> moe_router_score_function "sigmoid" +
                                             moe_router_enable_expert_bias
    n_group / topk_group                  -> moe_router_num_groups / moe_router_group_topk

HF applies rope to interleaved pairs (``rope_interleave``); megatron's MLA de-interleaves the
rope part before its rotate-half rope, which is the same rotation, so the weights map as they are
(logits equal the HF model's within 1e-5 in the tests). Refused by name, because megatron-core
computes them differently: ``rope_interleave: false``, ``norm_topk_prob: false`` (megatron
always renormalises the top-k sigmoid scores), group-limited routing that does not score groups
by their top 2 experts (megatron uses top ``topk / topk_group``), ``attention_bias``.
HF normalises the q/kv latents with eps 1e-6 whatever ``rms_norm_eps`` is; megatron uses
``rms_norm_eps`` there too (the same for DeepSeek-V3, whose ``rms_norm_eps`` is 1e-6).

Training: no load-balancing aux loss (``moe_aux_loss_coeff`` 0), dropless routing (no capacity
factor), and ``e_score_correction_bias`` stays frozen (``moe_router_bias_update_rate`` 0): the
GRPO update does not change it, and it is exported unchanged.

Weights: routed expert ``e`` of a MoE layer is ``mlp.experts.local_experts.{e}`` in the full
mcore dict (global expert numbers; ``engine.load_shard`` gives expert-parallel rank ``r`` the
experts ``r * local ... (r + 1) * local - 1``). Its fc1 is [gate; up] laid out expert-tensor-rank by
rank like the dense fc1. HF (transformers 5) holds all experts of a layer in two tensors,
``mlp.experts.gate_up_proj`` (experts, 2 x moe_intermediate, hidden; gate rows first) and
``mlp.experts.down_proj`` (experts, hidden, moe_intermediate); those are the names exported.
"""

from __future__ import annotations

from typing import Any, Iterator

import torch

from r1zero.host.errors import BackendUnavailable, ConfigError

_KEY = "model.path"


def _refuse(cond: bool, what: str) -> None:
    if cond:
        raise ConfigError(f"DeepSeek-V3 {what}: megatron-core computes it differently, so the "
                          f"megatron engine does not build this model", key=_KEY)


def facts(hf: Any, base: dict[str, Any]) -> dict[str, Any]:
    """``base`` (the dense facts) plus the MLA / MoE numbers of a DeepseekV3Config."""
    rope = dict(getattr(hf, "rope_parameters", None) or {})
    rope_type = rope.get("rope_type", "default")
    _refuse(not getattr(hf, "rope_interleave", True), "rope_interleave false")
    _refuse(not getattr(hf, "norm_topk_prob", True), "norm_topk_prob false")
    _refuse(bool(getattr(hf, "attention_bias", False)), "attention_bias true")
    _refuse(rope_type not in ("default", "yarn"), f"rope_type {rope_type!r}")
    groups, topk = hf.n_group or 1, hf.num_experts_per_tok
    if groups > 1:
        _refuse(topk // hf.topk_group != 2, f"group routing with num_experts_per_tok {topk} "
                f"and topk_group {hf.topk_group} (groups scored by top {topk // hf.topk_group})")
    k = min(hf.first_k_dense_replace, hf.num_hidden_layers)
    return {**base, "mla": True, "kv_heads": hf.num_attention_heads, "qkv_bias": False,
            "head_dim": hf.qk_nope_head_dim + hf.qk_rope_head_dim,
            "q_lora": hf.q_lora_rank, "kv_lora": hf.kv_lora_rank,
            "nope": hf.qk_nope_head_dim, "rope": hf.qk_rope_head_dim, "v_dim": hf.v_head_dim,
            "rope_type": rope_type, "rope_scaling": rope, "experts": hf.n_routed_experts,
            "topk": topk, "moe_ffn": hf.moe_intermediate_size,
            "shared_ffn": hf.moe_intermediate_size * (hf.n_shared_experts or 0),
            "moe_layers": [0] * k + [1] * (hf.num_hidden_layers - k),
            "scale": float(hf.routed_scaling_factor), "groups": groups,
            "group_topk": hf.topk_group if groups > 1 else None}


def config_kwargs(f: dict[str, Any], *, tp: int, ep: int, etp: int) -> dict[str, Any]:
    """MLATransformerConfig fields of DeepSeek-V3 beyond the dense ones. Sequence parallelism
    at tp > 1: megatron-core trains MoE layers under tensor parallelism only with it."""
    rope = f["rope_scaling"]
    yarn = f["rope_type"] == "yarn"
    out = {"multi_latent_attention": True, "qk_layernorm": True, "q_lora_rank": f["q_lora"],
           "kv_lora_rank": f["kv_lora"], "qk_head_dim": f["nope"],
           "qk_pos_emb_head_dim": f["rope"], "v_head_dim": f["v_dim"],
           "kv_channels": f["v_dim"], "rotary_base": f["theta"],
           "rope_type": "yarn" if yarn else "rope",
           "rotary_scaling_factor": float(rope.get("factor", 1.0)) if yarn else 1.0,
           "mscale": float(rope.get("mscale", 1.0)) if yarn else 1.0,
           "mscale_all_dim": float(rope.get("mscale_all_dim", 0.0)) if yarn else 0.0,
           "num_moe_experts": f["experts"], "moe_router_topk": f["topk"],
           "moe_ffn_hidden_size": f["moe_ffn"], "moe_layer_freq": f["moe_layers"],
           "moe_router_topk_scaling_factor": f["scale"], "moe_router_score_function": "sigmoid",
           "moe_router_enable_expert_bias": True, "moe_router_bias_update_rate": 0.0,
           "moe_router_num_groups": f["group_topk"] and f["groups"],
           "moe_router_group_topk": f["group_topk"], "moe_router_dtype": "fp32",
           "moe_router_load_balancing_type": "none", "moe_aux_loss_coeff": 0.0,
           "moe_expert_capacity_factor": None, "moe_token_dispatcher_type": "alltoall",
           "moe_grouped_gemm": False, "moe_permute_fusion": False, "moe_router_fusion": False,
           "moe_shared_expert_overlap": False, "expert_model_parallel_size": ep,
           "expert_tensor_parallel_size": etp, "sequence_parallel": tp > 1}
    if f["shared_ffn"]:
        out["moe_shared_expert_intermediate_size"] = f["shared_ffn"]
    if yarn:
        out.update(original_max_position_embeddings=int(rope["original_max_position_embeddings"]),
                   beta_fast=float(rope.get("beta_fast", 32)),
                   beta_slow=float(rope.get("beta_slow", 1)))
    return out


def _fc1(gate: torch.Tensor, up: torch.Tensor, tp: int) -> torch.Tensor:
    """[gate; up] rank by rank, so each of ``tp`` contiguous slices is [gate_r; up_r]."""
    g, u = gate.chunk(tp), up.chunk(tp)
    return torch.cat([x for r in range(tp) for x in (g[r], u[r])])


def _unfc1(fc1: torch.Tensor, tp: int) -> tuple[torch.Tensor, torch.Tensor]:
    pieces = fc1.chunk(2 * tp)
    return torch.cat(pieces[0::2]), torch.cat(pieces[1::2])


_ATTN = [("q_a_proj.weight", "linear_q_down_proj.weight"),
         ("q_a_layernorm.weight", "q_layernorm.weight"),
         ("q_b_proj.weight", "linear_q_up_proj.weight"),
         ("q_proj.weight", "linear_q_proj.weight"),
         ("kv_a_proj_with_mqa.weight", "linear_kv_down_proj.weight"),
         ("kv_a_layernorm.weight", "kv_layernorm.weight"),
         ("kv_b_proj.weight", "linear_kv_up_proj.weight"),
         ("o_proj.weight", "linear_proj.weight")]
_NORMS = [("input_layernorm.weight", "input_layernorm.weight"),
          ("post_attention_layernorm.weight", "pre_mlp_layernorm.weight")]


def layer_to_mcore(f: dict[str, Any], hf: dict[str, torch.Tensor], i: int, tp: int,
                   etp: int) -> dict[str, torch.Tensor]:
    """Full mcore tensors of layer ``i`` (keys relative to the layer) from HF tensors."""
    h = f"model.layers.{i}."
    out = {b: hf[h + a] for a, b in _NORMS}
    out.update({"self_attention." + b: hf[h + "self_attn." + a] for a, b in _ATTN
                if h + "self_attn." + a in hf})
    m = h + "mlp."
    if not f["moe_layers"][i]:
        out["mlp.linear_fc1.weight"] = _fc1(hf[m + "gate_proj.weight"], hf[m + "up_proj.weight"],
                                            tp)
        out["mlp.linear_fc2.weight"] = hf[m + "down_proj.weight"]
        return out
    out["mlp.router.weight"] = hf[m + "gate.weight"]
    out["mlp.router.expert_bias"] = hf[m + "gate.e_score_correction_bias"]
    inter = f["moe_ffn"]
    for e in range(f["experts"]):
        gate_up = hf[m + "experts.gate_up_proj"][e]
        x = f"mlp.experts.local_experts.{e}."
        out[x + "linear_fc1.weight"] = _fc1(gate_up[:inter], gate_up[inter:], etp)
        out[x + "linear_fc2.weight"] = hf[m + "experts.down_proj"][e]
    if f["shared_ffn"]:
        s = m + "shared_experts."
        out["mlp.shared_experts.linear_fc1.weight"] = _fc1(hf[s + "gate_proj.weight"],
                                                           hf[s + "up_proj.weight"], tp)
        out["mlp.shared_experts.linear_fc2.weight"] = hf[s + "down_proj.weight"]
    return out


def layer_to_hf(f: dict[str, Any], full: dict[str, torch.Tensor], i: int, tp: int,
                etp: int) -> Iterator[tuple[str, torch.Tensor]]:
    """HF-named tensors of layer ``i`` from its full mcore tensors (keyed relative to the
    layer, routed experts by global number)."""
    h = f"model.layers.{i}."
    for a, b in _ATTN:
        if "self_attention." + b in full:
            yield h + "self_attn." + a, full["self_attention." + b]
    if not f["moe_layers"][i]:
        gate, up = _unfc1(full["mlp.linear_fc1.weight"], tp)
        yield from ((h + "mlp.gate_proj.weight", gate), (h + "mlp.up_proj.weight", up),
                    (h + "mlp.down_proj.weight", full["mlp.linear_fc2.weight"]))
    else:
        yield from _moe_to_hf(f, full, h + "mlp.", tp, etp)
    for a, b in _NORMS:
        yield h + a, full[b]


def _moe_to_hf(f: dict[str, Any], full: dict[str, torch.Tensor], m: str, tp: int,
               etp: int) -> Iterator[tuple[str, torch.Tensor]]:
    x = "mlp.experts.local_experts.{e}."
    experts = range(f["experts"])
    yield m + "experts.gate_up_proj", torch.stack(
        [torch.cat(_unfc1(full[x.format(e=e) + "linear_fc1.weight"], etp)) for e in experts])
    yield m + "experts.down_proj", torch.stack(
        [full[x.format(e=e) + "linear_fc2.weight"] for e in experts])
    yield m + "gate.weight", full["mlp.router.weight"]
    if "mlp.router.expert_bias" in full:   # a buffer: absent from gradients
        yield m + "gate.e_score_correction_bias", full["mlp.router.expert_bias"]
    if f["shared_ffn"]:
        gate, up = _unfc1(full["mlp.shared_experts.linear_fc1.weight"], tp)
        s = m + "shared_experts."
        yield from ((s + "gate_proj.weight", gate), (s + "up_proj.weight", up),
                    (s + "down_proj.weight", full["mlp.shared_experts.linear_fc2.weight"]))


def block_spec(config: Any):
    """megatron-core's local (non-TransformerEngine) decoder block spec for this config: dense
    first layers, MoE layers (``moe_layer_freq``), MLA attention with three replacements:

    - core attention ``core_attention_class()`` (megatron-core 0.16.1's local
      ``DotProductAttention`` does not take the ``k_channels`` / ``v_channels`` that MLA passes
      it; only TransformerEngine's does);
    - q / kv down projections replicated on every tp rank (megatron's plain ``Linear``, what
      TransformerEngine's "duplicated" mode does) instead of column-parallel: with the
      column-parallel ones megatron-core 0.16.1 does not sum the rope key's gradient over the
      tp ranks (each holds only its heads' share), so gradients are wrong at tp > 1;
    - norms ``norm_class()``, which run under sequence parallelism.
    """
    from megatron.core.models.gpt.gpt_layer_specs import get_gpt_decoder_block_spec
    from megatron.core.transformer import multi_latent_attention

    without_transformer_engine()
    spec = get_gpt_decoder_block_spec(config, use_transformer_engine=False,
                                      normalization="RMSNorm")
    core, norm = core_attention_class(), norm_class()
    replicated = multi_latent_attention.Linear
    if replicated is None:
        raise BackendUnavailable("megatron", "megatron-core's MLA has no replicated Linear here "
                                 "(megatron.core.post_training.modelopt.layers not importable)")
    for layer in spec.layer_specs:
        attention = layer.submodules.self_attention.submodules
        attention.core_attention = core
        attention.linear_q_down_proj = attention.linear_kv_down_proj = replicated
        attention.q_layernorm = attention.kv_layernorm = norm
        layer.submodules.input_layernorm = layer.submodules.pre_mlp_layernorm = norm
    spec.layer_norm = norm
    return spec


def norm_class() -> type:
    """torch's RMSNorm as a megatron norm that also runs under sequence parallelism (megatron's
    torch-norm wrapper refuses it; its own fused norms need Apex or TransformerEngine): each
    tp rank normalises its slice of the sequence, and the weight is marked
    ``sequence_parallel`` so megatron all-reduces its gradient over the tp ranks."""
    class RMSNorm(torch.nn.RMSNorm):
        def __init__(self, config: Any, hidden_size: int, eps: float = 1e-5, **_: Any):
            super().__init__(hidden_size, eps=eps)
            self.weight.sequence_parallel = config.sequence_parallel

    return RMSNorm


def core_attention_class() -> type:
    """The local ``DotProductAttention`` taking MLA's key / value widths: it multiplies q . k
    over the key width and writes ``heads x kv_channels`` (= v_head_dim) outputs, so the widths
    need no other handling."""
    from megatron.core.transformer.dot_product_attention import DotProductAttention

    class MLADotProductAttention(DotProductAttention):
        def __init__(self, *args: Any, k_channels: int | None = None,
                     v_channels: int | None = None, **kwargs: Any):
            super().__init__(*args, **kwargs)
            assert v_channels in (None, self.config.kv_channels), (v_channels, self.config)

    return MLADotProductAttention


def without_transformer_engine() -> None:
    """Two places where megatron-core 0.16.1 breaks MLA / MoE with its local modules when
    TransformerEngine is absent (on any hardware, not only CPU), set right when it is absent:

    - ``multi_latent_attention.HAVE_TE`` is True because megatron's TE extension module imports
      with mock stand-ins, and ``isinstance(linear_proj, TELinear)`` then raises: set False;
    - ``moe_utils.te_general_gemm`` is never defined, and the router's gating linear reads it:
      set None (the router then uses ``torch.mm``).
    """
    import importlib.util

    if importlib.util.find_spec("transformer_engine") is not None:
        return
    from megatron.core.transformer import multi_latent_attention
    from megatron.core.transformer.moe import moe_utils

    multi_latent_attention.HAVE_TE = False
    if not hasattr(moe_utils, "te_general_gemm"):
        moe_utils.te_general_gemm = None


def checkpoint_tensors(name: str, tensor: torch.Tensor,
                       moe_ffn: int) -> Iterator[tuple[str, torch.Tensor]]:
    """An exported tensor under DeepSeek-V3's checkpoint names: the fused expert tensors of
    transformers 5 become ``mlp.experts.{e}.gate_proj / up_proj / down_proj.weight`` (the layout
    of the published checkpoints, which transformers 5 also loads); others pass as they are."""
    if name.endswith("mlp.experts.gate_up_proj"):
        base = name[:-len("gate_up_proj")]
        for e, t in enumerate(tensor):
            yield base + f"{e}.gate_proj.weight", t[:moe_ffn]
            yield base + f"{e}.up_proj.weight", t[moe_ffn:]
    elif name.endswith("mlp.experts.down_proj"):
        base = name[:-len("down_proj")]
        yield from ((base + f"{e}.down_proj.weight", t) for e, t in enumerate(tensor))
    else:
        yield name, tensor
