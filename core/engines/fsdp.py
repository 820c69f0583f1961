"""Sharded train engine: PyTorch FSDP2 (``fully_shard``) with optional DTensor tensor parallel.

``FSDPTrainEngine`` has the interface documented in ``engines.torch_engine`` (``actor.engine: fsdp``;
the default when a run has more than one rank). Every rank of a ``torch.distributed`` group
builds it with the same arguments:

- a device mesh over all ranks from the backend's device type (the group itself comes from the
  backend's collective: cpu gloo, cuda nccl, npu hccl): 1-D ``("dp",)``, or 2-D ``("dp", "tp")``
  when ``actor.tensor_parallel`` > 1. Ranks of one tp group hold the same data.
- tensor parallel (tp > 1): attention q/k/v and MLP gate/up column-wise, o/down row-wise, in every
  decoder layer of the Llama family (llama, qwen2, qwen3); embeddings and norms stay replicated
  over tp;
- ``fully_shard`` on each decoder layer, then on the root, over the dp mesh, with
  ``MixedPrecisionPolicy(param_dtype=model.dtype, reduce_dtype=float32)``: parameters, gradients
  and AdamW state are fp32 shards; forwards all-gather the layer in the compute dtype.
  ``actor.distributed_optimizer: false`` keeps every state whole on each rank instead (FSDP2's
  hybrid mode with a shard group of 1: gradients are all-reduced, nothing is sharded).
- gradients are summed over dp ranks, not averaged: the trainer weighs each rank's loss by its
  share of the global token count, so the sum is the single-process gradient.
- the frozen reference is sharded the same way, with no gradients or optimizer state.

Every rank must run the same sequence of forwards (each all-gathers parameters): the trainer
gives every rank the same number of micro-batches.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Iterator

import torch
import torch.distributed as tdist
from r1zero.engines import packing
from r1zero.engines.precision import compute_dtype, make_scaler
from r1zero.engines.torch_engine import (
    ScaledAdamWEngine,
    load_actor,
    make_optimizer,
    offload_for_rollout,
    response_logits,
    set_recompute,
    token_logprobs,
)
from r1zero.host.errors import ConfigError

if TYPE_CHECKING:
    from r1zero.config.recipe import RecipeConfig

TP_ARCHS = ("llama", "qwen2", "qwen3")


def ensure_group(collective: str) -> None:
    """A one-rank process group for an fsdp engine in a one-process run (none exists yet)."""
    import socket

    if tdist.is_initialized():
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tdist.init_process_group(collective, init_method=f"tcp://127.0.0.1:{port}", rank=0,
                             world_size=1)


def make_mesh(device_type: str, tp: int):
    """The (dp, tp) device mesh of the current process group (1-D ``dp`` when tp is 1)."""
    from torch.distributed.device_mesh import init_device_mesh

    world = tdist.get_world_size()
    if world % tp:
        raise ConfigError(f"actor.tensor_parallel {tp} does not divide the {world} ranks",
                          key="actor.tensor_parallel")
    if tp == 1:
        return init_device_mesh(device_type, (world,), mesh_dim_names=("dp",))
    # full-tensor gathers of 2-D shards warn that they take two collectives (they must)
    logging.getLogger("torch.distributed.tensor._redistribute").setLevel(logging.ERROR)
    return init_device_mesh(device_type, (world // tp, tp), mesh_dim_names=("dp", "tp"))


def tp_plan(model: torch.nn.Module) -> dict[str, Any]:
    """The per-decoder-layer tensor-parallel plan of a Llama-family model."""
    from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel

    mtype = getattr(model.config, "model_type", None)
    if mtype not in TP_ARCHS:
        raise ConfigError(f"tensor parallel is implemented for {', '.join(TP_ARCHS)}; "
                          f"{mtype!r} is not one of them", key="actor.tensor_parallel")
    col, row = ColwiseParallel, RowwiseParallel
    return {"self_attn.q_proj": col(), "self_attn.k_proj": col(), "self_attn.v_proj": col(),
            "self_attn.o_proj": row(), "mlp.gate_proj": col(), "mlp.up_proj": col(),
            "mlp.down_proj": row()}


def apply_tp(model: torch.nn.Module, tp_mesh) -> None:
    """Split each decoder layer's attention heads and MLP columns over ``tp_mesh``."""
    from torch.distributed.tensor.parallel import parallelize_module

    cfg, tp = model.config, tp_mesh.size()
    kv = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
    if cfg.num_attention_heads % tp or kv % tp:
        raise ConfigError(f"{cfg.num_attention_heads} attention heads / {kv} key-value heads do "
                          f"not split over tensor_parallel {tp}", key="actor.tensor_parallel")
    plan = tp_plan(model)
    for layer in model.model.layers:
        parallelize_module(layer, tp_mesh, plan)


def shard(model: torch.nn.Module, mesh, dtype: torch.dtype, sharded: bool = True,
          offload: bool = False) -> torch.nn.Module:
    """Tensor parallel (when ``mesh`` has a tp dim), then ``fully_shard`` per decoder layer and
    at the root over the dp ranks. ``sharded`` False replicates instead (shard group of 1)."""
    from torch.distributed.fsdp import (
        CPUOffloadPolicy,
        FSDPModule,
        MixedPrecisionPolicy,
        OffloadPolicy,
        fully_shard,
    )

    if "tp" in (mesh.mesh_dim_names or ()):
        apply_tp(model, mesh["tp"])
    dp = mesh["dp"]
    if not sharded:                     # HSDP with shard size 1: every rank keeps all state
        from torch.distributed.device_mesh import DeviceMesh

        ranks = dp.mesh.reshape(-1, 1)
        dp = DeviceMesh(mesh.device_type, ranks, mesh_dim_names=("replicate", "shard"))
    mp = MixedPrecisionPolicy(param_dtype=None if dtype == torch.float32 else dtype,
                              reduce_dtype=torch.float32)
    kw = {"mesh": dp, "mp_policy": mp,
          "offload_policy": CPUOffloadPolicy(pin_memory=True) if offload else OffloadPolicy()}
    for layer in model.model.layers:
        fully_shard(layer, **kw)
    fully_shard(model, **kw)
    for m in model.modules():           # sum over ranks: each rank's loss is pre-weighted
        if isinstance(m, FSDPModule):
            m.set_gradient_divide_factor(1.0)
            m.set_force_sum_reduction_for_comms(True)     # gloo has no PREMUL_SUM
    return model


class FSDPTrainEngine(ScaledAdamWEngine):
    """The actor and reference sharded over the ranks of the current process group."""

    name = "fsdp"
    implements = frozenset({
        "actor.recompute", "actor.distributed_optimizer", "actor.initial_loss_scale",
        "actor.use_dynamic_bsz", "actor.max_packing_token_size", "actor.use_remove_padding",
        "rollout.offload_train_params",
        "rollout.offload_train_grads", "rollout.offload_train_optimizer"})
    reduces_grads = True
    weights_in_place = False

    def __init__(self, cfg: RecipeConfig, tokenizer: Any, device: str = "cpu", mesh: Any = None):
        self.cfg, self.device = cfg, torch.device(device)
        self.compute_dtype = compute_dtype(cfg)
        self.scaler = make_scaler(cfg)
        check_fsdp_config(cfg)
        if self.device.type == "cuda":
            self.device = torch.device("cuda", torch.cuda.current_device())
        self.mesh = mesh if mesh is not None else make_mesh(self.device.type, cfg.actor.tensor_parallel)
        sharded = cfg.actor.distributed_optimizer is not False
        offload = offload_applies(cfg, self.device.type)
        actor = load_actor(cfg)
        self.share_prompts = set_recompute(actor, cfg, "fsdp")
        if cfg.actor.use_remove_padding:
            packing.enable(actor)
        self.model = shard(actor, self.mesh, self.compute_dtype, sharded, offload)
        self.ref = None
        if cfg.reference.enabled and cfg.algorithm.kl_coef > 0:
            ref = load_actor(cfg).eval().requires_grad_(False)
            if cfg.actor.use_remove_padding:
                packing.enable(ref)
            self.ref = shard(ref, self.mesh, self.compute_dtype, sharded, offload)
        self.optimizer, self.scheduler = make_optimizer(cfg, self.model.parameters())
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def logprobs(self, model: torch.nn.Module, batch: Any, temperature: float,
                 with_entropy: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        if isinstance(batch, packing.PackedBatch):
            return packing.packed_logprobs(model, batch, temperature, with_entropy)
        logits = response_logits(model, batch, self.share_prompts)
        return token_logprobs(logits, batch, temperature, with_entropy)

    @torch.no_grad()
    def full_weights(self) -> Iterator[tuple[str, torch.Tensor]]:
        """HF-named full fp32 tensors, gathered one at a time (a collective: every rank iterates)."""
        for name, t in self.model.state_dict().items():
            if hasattr(t, "full_tensor"):
                t = t.full_tensor()
            yield name, t.detach().to(self.device)

    def rollout_phase(self):
        return offload_for_rollout(self, skip=offload_applies(self.cfg, self.device.type))


def offload_applies(cfg: RecipeConfig, device_type: str) -> bool:
    """FSDP2 CPU offload for the whole run: an accelerator run with ``offload_train_params``,
    ``_grads`` and ``_optimizer`` all set (FSDP2 keeps the three together on the host)."""
    r = cfg.rollout
    return device_type != "cpu" and r.offload_train_params and r.offload_train_grads and \
        r.offload_train_optimizer


def check_fsdp_config(cfg: RecipeConfig) -> None:
    """Refuse, naming key and engine, what this engine does not implement."""
    a = cfg.actor
    for key, value in (("pipeline_parallel", a.pipeline_parallel),
                       ("expert_parallel", a.expert_parallel)):
        if value > 1:
            raise ConfigError(f"{key} {value} is not implemented by the fsdp engine (it shards "
                              f"data-parallel and tensor-parallel only); set it to 1 or use an "
                              f"engine that implements it", key=f"actor.{key}")
