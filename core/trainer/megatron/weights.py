"""The actor's weights as full HF-named tensors, layer by layer, on every rank.

Tensor-parallel slices are all-gathered along the dimension megatron marks on each parameter
(recorded when the weights were loaded); a layer held by another pipeline stage is broadcast from that stage's
rank in this rank's pipeline group. The rollout engine takes the pairs as they come (the
built-in sampler here; vLLM's ``load_weights`` on GPUs/NPUs), so at most one layer is gathered
at a time.
"""

from __future__ import annotations

from typing import Any, Iterator

import torch
import torch.distributed as dist

from r1zero.trainer.megatron import model as M


def _gather_tp(param: torch.Tensor, dim: int | None) -> torch.Tensor:
    """The full tensor of a parameter split along ``dim`` over the tensor-parallel group."""
    from megatron.core import parallel_state as ps

    if dim is None:
        return param.detach().clone()
    parts = [torch.empty_like(param) for _ in range(ps.get_tensor_model_parallel_world_size())]
    dist.all_gather(parts, param.detach().contiguous(), group=ps.get_tensor_model_parallel_group())
    return torch.cat(parts, dim=dim)


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
    named = {k: (v.main_grad if grads else v) for k, v in engine.model.named_parameters()}
    params = {k: (v, engine.split_dims.get(k)) for k, v in named.items()}
    stage = ps.get_pipeline_model_parallel_rank()
    last = len(engine.stages) - 1
    first = {"e": _gather_tp(*params["embedding.word_embeddings.weight"])} if stage == 0 else None
    yield "model.embed_tokens.weight", _from_stage(first, 0)["e"][:f["vocab"]]
    for i in range(f["layers"]):
        owner = _owner(engine.stages, i)
        local = None
        if owner == stage:
            prefix = f"decoder.layers.{i - engine.layer_offset()}."
            local = {k[len(prefix):]: _gather_tp(*v) for k, v in params.items()
                     if k.startswith(prefix)}
        yield from M.mcore_to_hf_layer(f, _from_stage(local, owner), i, tp)
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
