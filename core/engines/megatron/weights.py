"""The actor's weights as full HF-named tensors, layer by layer, on every rank.

Tensor-parallel slices are all-gathered along the dimension megatron marks on each parameter
(recorded when the weights were loaded); a routed expert's slices over the expert-tensor group,
then each expert-parallel rank's local experts over the expert-parallel group (renumbered
globally); a layer held by another pipeline stage is broadcast from that stage's rank in this
rank's pipeline group. The rollout engine takes the pairs as they come (the
built-in sampler here; vLLM's ``load_weights`` on GPUs/NPUs), so at most one layer is gathered
at a time.
"""

from __future__ import annotations

from typing import Any, Iterator

import torch
import torch.distributed as dist
from r1zero.engines.megatron import model as M
from r1zero.engines.megatron.moe import global_expert


def _gather_tp(param: torch.Tensor, dim: int | None, group: Any = None) -> torch.Tensor:
    """The full tensor of a parameter split along ``dim`` over ``group`` (default: the
    tensor-parallel group)."""
    from megatron.core import parallel_state as ps

    if dim is None:
        return param.detach().clone()
    group = group or ps.get_tensor_model_parallel_group()
    parts = [torch.empty_like(param) for _ in range(dist.get_world_size(group))]
    dist.all_gather(parts, param.detach().contiguous(), group=group)
    return torch.cat(parts, dim=dim)


def _gather_layer(params: dict[str, tuple[torch.Tensor, int | None]], prefix: str,
                  n_experts: int) -> dict[str, torch.Tensor]:
    """Full tensors of one layer's parameters (names after ``prefix``), routed experts under
    their global numbers."""
    from megatron.core import parallel_state as ps


    out = {}
    for name, (param, dim) in params.items():
        if not name.startswith(prefix):
            continue
        name, expert = global_expert(name[len(prefix):], n_experts)
        if not expert:
            out[name] = _gather_tp(param, dim)
            continue
        whole = _gather_tp(param, dim, ps.get_expert_tensor_parallel_group())
        ep = ps.get_expert_model_parallel_world_size()
        parts = [torch.empty_like(whole) for _ in range(ep)]
        dist.all_gather(parts, whole.contiguous(), group=ps.get_expert_model_parallel_group())
        e = int(name.split(".local_experts.")[1].split(".")[0])
        local = n_experts // ep
        first = e - ps.get_expert_model_parallel_rank() * local
        for r, part in enumerate(parts):
            out[name.replace(f".local_experts.{e}.", f".local_experts.{r * local + first}.")] = part
    return out


def _from_stage(tensors: dict[str, torch.Tensor] | None, stage: int) -> dict[str, torch.Tensor]:
    """``tensors`` of pipeline ``stage`` on every rank of this pipeline group."""
    from megatron.core import parallel_state as ps

    if ps.get_pipeline_model_parallel_world_size() == 1:
        return tensors or {}
    group = ps.get_pipeline_model_parallel_group()
    src = dist.get_process_group_ranks(group)[stage]
    mine = ps.get_pipeline_model_parallel_rank() == stage
    meta = [{k: (tuple(v.shape), v.dtype) for k, v in tensors.items()} if mine else None]
    dist.broadcast_object_list(meta, src=src, group=group)
    out = {}
    for key, (shape, dtype) in meta[0].items():
        t = tensors[key].contiguous() if mine else torch.empty(shape, dtype=dtype)
        dist.broadcast(t, src=src, group=group)
        out[key] = t
    return out


def gather_hf(engine: Any, grads: bool = False) -> Iterator[tuple[str, torch.Tensor]]:
    """(HF name, full tensor) pairs: embeddings, each layer, final norm and head; with
    ``grads`` the reduced fp32 gradients (DDP's ``main_grad``) in place of the weights."""
    from megatron.core import parallel_state as ps

    f, tp = engine.facts, engine.tp
    etp = getattr(engine, "etp", tp)
    named = {k: (v.main_grad if grads else v) for k, v in engine.model.named_parameters()}
    if not grads:   # the router's expert bias (DeepSeek-V3's e_score_correction_bias) is a buffer
        named.update((k, b) for k, b in engine.model.named_buffers() if k.endswith("expert_bias"))
    params = {k: (v, engine.split_dims.get(k)) for k, v in named.items()}
    stage = ps.get_pipeline_model_parallel_rank()
    last = len(engine.stages) - 1
    first = {"e": _gather_tp(*params["embedding.word_embeddings.weight"])} if stage == 0 else None
    yield "model.embed_tokens.weight", _from_stage(first, 0)["e"][:f["vocab"]]
    for i in range(f["layers"]):
        owner = _owner(engine.stages, i)
        local = None
        if owner == stage:
            local = _gather_layer(params, f"decoder.layers.{i - engine.layer_offset()}.",
                                  f.get("experts", 0))
        yield from M.mcore_to_hf_layer(f, _from_stage(local, owner), i, tp, etp)
    tail = None
    if stage == last:
        tail = {"norm": _gather_tp(*params["decoder.final_layernorm.weight"])}
        if not f["tied"]:
            tail["head"] = _gather_tp(*params["output_layer.weight"])
    tail = _from_stage(tail, last)
    yield "model.norm.weight", tail["norm"]
    if not f["tied"]:
        yield "lm_head.weight", tail["head"][:f["vocab"]]


def _owner(stages: list[int], layer: int) -> int:
    total = 0
    for s, n in enumerate(stages):
        total += n
        if layer < total:
            return s
    raise IndexError(layer)
