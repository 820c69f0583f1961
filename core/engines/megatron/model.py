"""A megatron-core ``GPTModel`` built from a Hugging Face config, and HF <-> mcore weights.

Dense Llama / Qwen2 (RMSNorm, SwiGLU, rotary, grouped-query attention, optional qkv bias) and
DeepSeek-V3 (multi-latent attention, MoE with shared experts after dense first layers; the
mapping lives in ``deepseek``) with megatron-core's own (non-TransformerEngine) layer specs and
every fusion off, so the same model builds on CUDA, on Ascend (MindSpeed patches these modules)
and, in tests, on CPU ranks.

Weights use r1zero's own mapping (``hf_to_mcore`` / ``mcore_to_hf``): a full mcore-named tensor
per HF tensor, then each rank takes its tensor-parallel slice along the dimension megatron
marks on the parameter (``recorded split dimension). Two layouts are arranged so one contiguous slice
per rank is right: the fused qkv weight is laid out group by group ([q heads of group g; k_g;
v_g] for g over key/value heads), and the SwiGLU fc1 weight rank by rank ([gate_r; up_r]).
"""

from __future__ import annotations

from typing import Any, Iterator

import torch

from r1zero.host.errors import ConfigError

_HF_LAYER = "model.layers.{i}."
_MC_LAYER = "decoder.layers.{i}."
# (HF suffix, mcore suffix) of tensors that map one to one.
_SAME = [("input_layernorm.weight", "input_layernorm.weight"),
         ("post_attention_layernorm.weight", "pre_mlp_layernorm.weight"),
         ("self_attn.o_proj.weight", "self_attention.linear_proj.weight"),
         ("mlp.down_proj.weight", "mlp.linear_fc2.weight")]


DENSE_TYPES = ("llama", "qwen2")
MODEL_TYPES = (*DENSE_TYPES, "deepseek_v3")


def arch_facts(hf: Any) -> dict[str, Any]:
    """The numbers the mcore config needs, from a transformers config object."""
    if hf.model_type not in MODEL_TYPES:
        raise ConfigError(f"the megatron engine builds {', '.join(MODEL_TYPES)} models, not "
                          f"model_type {hf.model_type!r}", key="model.path")
    heads = hf.num_attention_heads
    rope = getattr(hf, "rope_parameters", None) or {}
    theta = rope.get("rope_theta") or getattr(hf, "rope_theta", None) or 10000.0
    base = {"layers": hf.num_hidden_layers, "hidden": hf.hidden_size, "heads": heads,
            "kv_heads": getattr(hf, "num_key_value_heads", None) or heads,
            "head_dim": getattr(hf, "head_dim", None) or hf.hidden_size // heads,
            "ffn": hf.intermediate_size, "vocab": hf.vocab_size, "eps": hf.rms_norm_eps,
            "theta": float(theta), "max_pos": hf.max_position_embeddings,
            "tied": bool(getattr(hf, "tie_word_embeddings", False)),
            "qkv_bias": hf.model_type == "qwen2" or bool(getattr(hf, "attention_bias", False)),
            "mla": False, "experts": 0}
    if hf.model_type == "deepseek_v3":
        from r1zero.engines.megatron import deepseek

        return deepseek.facts(hf, base)
    return base


def padded_vocab(vocab: int, tp: int) -> int:
    """The vocabulary rounded up to a multiple of tp (rows past ``vocab`` are zero, and their
    logits are dropped before any softmax)."""
    return -(-vocab // tp) * tp


RECOMPUTE = {"none": {}, "selective": {"recompute_granularity": "selective"},
             "full": {"recompute_granularity": "full", "recompute_method": "uniform",
                      "recompute_num_layers": 1}}


def transformer_config(f: dict[str, Any], *, tp: int, pp: int, dtype: torch.dtype,
                       num_layer_list: list[int] | None = None, recompute: str = "none",
                       ep: int = 1, etp: int | None = None):
    """megatron-core ``TransformerConfig`` (``MLATransformerConfig`` for DeepSeek-V3) for the
    facts ``f`` on a tp x pp layout, routed experts over ep ranks and split over etp.
    ``recompute`` (``actor.recompute``): ``full`` recomputes every decoder layer in backward
    (megatron's uniform method, one layer per unit), ``selective`` the core attention only."""
    import torch.nn.functional as F
    from megatron.core.transformer import MLATransformerConfig, TransformerConfig

    extra = {**pipeline_split(num_layer_list), **RECOMPUTE[recompute]}
    make = TransformerConfig
    if f.get("mla"):
        from r1zero.engines.megatron import deepseek

        extra.update(deepseek.config_kwargs(f, tp=tp, ep=ep, etp=tp if etp is None else etp))
        make = MLATransformerConfig
    else:
        extra.update(kv_channels=f["head_dim"], sequence_parallel=False)
    return make(
        num_layers=f["layers"], hidden_size=f["hidden"], num_attention_heads=f["heads"],
        num_query_groups=f["kv_heads"], ffn_hidden_size=f["ffn"],
        normalization="RMSNorm", layernorm_epsilon=f["eps"], gated_linear_unit=True,
        activation_func=F.silu, add_bias_linear=False, add_qkv_bias=f["qkv_bias"],
        hidden_dropout=0.0, attention_dropout=0.0, tensor_model_parallel_size=tp,
        pipeline_model_parallel_size=pp, params_dtype=dtype, pipeline_dtype=dtype,
        bf16=dtype == torch.bfloat16, fp16=dtype == torch.float16, use_cpu_initialization=True,
        perform_initialization=False, bias_activation_fusion=False, masked_softmax_fusion=False,
        persist_layer_norm=False, gradient_accumulation_fusion=False, apply_rope_fusion=False,
        bias_dropout_fusion=False, **extra)


def pipeline_split(num_layer_list: list[int] | None) -> dict[str, Any]:
    """TransformerConfig keys placing ``num_layer_list[s]`` layers on pipeline stage s.

    Even stages need nothing; uneven first/last stages with equal middle ones use
    ``num_layers_in_first/last_pipeline_stage`` (also in older megatron-core releases); any
    other split (the 671B recipe's 9,10,10,10,11,11) is a ``pipeline_model_parallel_layout``,
    ``E`` (embedding) + ``t`` per layer per stage + ``L`` (output layer and loss)."""
    from megatron.core.transformer import TransformerConfig

    if not num_layer_list or len(set(num_layer_list)) == 1:
        return {}
    if len(set(num_layer_list[1:-1])) <= 1:
        return {"num_layers_in_first_pipeline_stage": num_layer_list[0],
                "num_layers_in_last_pipeline_stage": num_layer_list[-1]}
    if "pipeline_model_parallel_layout" not in TransformerConfig.__dataclass_fields__:
        raise ConfigError(f"num_layer_list {num_layer_list}: this megatron-core places uneven "
                          f"layers only in the first and last stage (middle stages equal); "
                          f"megatron-core >= 0.13 takes any split", key="actor.num_layer_list")
    return {"pipeline_model_parallel_layout":
            "E" + "|".join("t" * n for n in num_layer_list) + "L"}


def build_gpt(f: dict[str, Any], config: Any, *, tp: int):
    """The GPTModel piece of this pipeline stage (pre/post process from parallel_state)."""
    from megatron.core import parallel_state as ps
    from megatron.core.models.gpt import GPTModel
    from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec

    if f.get("mla"):   # dense first layers, then MoE layers (config.moe_layer_freq)
        from r1zero.engines.megatron import deepseek

        spec = deepseek.block_spec(config)
    else:
        spec = get_gpt_layer_local_spec(normalization="RMSNorm")
    return GPTModel(config=config, transformer_layer_spec=spec,
                    vocab_size=padded_vocab(f["vocab"], tp), max_sequence_length=f["max_pos"],
                    pre_process=ps.is_pipeline_first_stage(),
                    post_process=ps.is_pipeline_last_stage(), parallel_output=False,
                    share_embeddings_and_output_weights=f["tied"],
                    position_embedding_type="rope",   # MLA applies its own rope
                    rotary_base=f["theta"])


def _qkv(f: dict, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """HF q, k, v (rows = heads x head_dim) -> mcore fused rows, group by group."""
    g, d = f["kv_heads"], f["head_dim"]
    per = f["heads"] // g
    rest = q.shape[1:]
    return torch.cat([q.reshape(g, per * d, *rest), k.reshape(g, d, *rest),
                      v.reshape(g, d, *rest)], dim=1).reshape(-1, *rest)


def _unqkv(f: dict, qkv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g, d = f["kv_heads"], f["head_dim"]
    per = f["heads"] // g
    rest = qkv.shape[1:]
    grouped = qkv.reshape(g, (per + 2) * d, *rest)
    q, k, v = grouped.split([per * d, d, d], dim=1)
    return q.reshape(-1, *rest), k.reshape(-1, *rest), v.reshape(-1, *rest)


def _pad_rows(t: torch.Tensor, rows: int) -> torch.Tensor:
    return t if t.shape[0] == rows else torch.cat([t, t.new_zeros(rows - t.shape[0], *t.shape[1:])])


def hf_to_mcore(f: dict[str, Any], hf: dict[str, torch.Tensor], tp: int,
                etp: int | None = None) -> dict[str, torch.Tensor]:
    """Full (unsharded) mcore-named tensors, global layer numbers (and global expert numbers),
    from an HF state dict; routed experts' fc1 laid out for ``etp`` (default tp) ranks."""
    vocab = padded_vocab(f["vocab"], tp)
    out = {"embedding.word_embeddings.weight": _pad_rows(hf["model.embed_tokens.weight"], vocab),
           "decoder.final_layernorm.weight": hf["model.norm.weight"]}
    if not f["tied"]:
        out["output_layer.weight"] = _pad_rows(hf["lm_head.weight"], vocab)
    for i in range(f["layers"]):
        h, m = _HF_LAYER.format(i=i), _MC_LAYER.format(i=i)
        if f.get("mla"):
            from r1zero.engines.megatron import deepseek

            layer = deepseek.layer_to_mcore(f, hf, i, tp, tp if etp is None else etp)
            out.update({m + k: v for k, v in layer.items()})
            continue
        for a, b in _SAME:
            out[m + b] = hf[h + a]
        attn = h + "self_attn."
        out[m + "self_attention.linear_qkv.weight"] = _qkv(
            f, hf[attn + "q_proj.weight"], hf[attn + "k_proj.weight"], hf[attn + "v_proj.weight"])
        if f["qkv_bias"]:
            out[m + "self_attention.linear_qkv.bias"] = _qkv(
                f, hf[attn + "q_proj.bias"], hf[attn + "k_proj.bias"], hf[attn + "v_proj.bias"])
        gate, up = hf[h + "mlp.gate_proj.weight"].chunk(tp), hf[h + "mlp.up_proj.weight"].chunk(tp)
        out[m + "mlp.linear_fc1.weight"] = torch.cat([x for r in range(tp) for x in (gate[r], up[r])])
    return out


def mcore_to_hf_layer(f: dict[str, Any], full: dict[str, torch.Tensor], i: int, tp: int,
                      etp: int | None = None) -> Iterator[tuple[str, torch.Tensor]]:
    """HF-named tensors of layer ``i`` from its full mcore tensors (``full`` keyed by suffix)."""
    if f.get("mla"):
        from r1zero.engines.megatron import deepseek

        yield from deepseek.layer_to_hf(f, full, i, tp, tp if etp is None else etp)
        return
    h = _HF_LAYER.format(i=i)
    for a, b in _SAME:
        yield h + a, full[b]
    q, k, v = _unqkv(f, full["self_attention.linear_qkv.weight"])
    yield from ((h + f"self_attn.{n}_proj.weight", t) for n, t in zip("qkv", (q, k, v)))
    if f["qkv_bias"]:
        q, k, v = _unqkv(f, full["self_attention.linear_qkv.bias"])
        yield from ((h + f"self_attn.{n}_proj.bias", t) for n, t in zip("qkv", (q, k, v)))
    pieces = full["mlp.linear_fc1.weight"].chunk(2 * tp)
    yield h + "mlp.gate_proj.weight", torch.cat(pieces[0::2])
    yield h + "mlp.up_proj.weight", torch.cat(pieces[1::2])
