"""``MegatronTrainEngine``: the actor as a megatron-core GPTModel sharded tp x pp (x dp).

Built on the megatron-core APIs that the older releases MindSpeed pins also have:
``parallel_state.initialize_model_parallel``, ``GPTModel``, ``DistributedDataParallel``,
``get_megatron_optimizer`` and ``get_forward_backward_func``.

- ``parallel_state`` comes from the recipe's actor layout (tensor_parallel, pipeline_parallel,
  expert_parallel and moe_tp_extend_ep for MoE models: ``moe``); the data-parallel size is what
  remains of the world.
- DeepSeek-V3 (``deepseek``): MLA + MoE; no aux loss, dropless routing, and the router's
  ``e_score_correction_bias`` is not updated (frozen at its loaded value).
- Megatron DDP reduces fp32 gradients; the megatron optimizer (distributed when
  ``actor.distributed_optimizer``) keeps fp32 master weights and Adam state.
- ``forward_backward(batches, loss_fn)`` runs megatron's schedule (1F1B when pp > 1) over
  micro-batches padded to one shape; on the last stage the logits become response log-probs and
  entropies, and ``loss_fn`` (the trainer's GRPO objective) turns them into the loss.
- The reference model is a second GPTModel in the same layout, frozen.
- ``algorithm.routing_replay`` (``replay``): the MoE routers of both take the rollout's expert
  choices, which the micro-batches carry (``SeqBatch.routes``).

Hardware: megatron-core calls CUDA (on Ascend, MindSpeed's ``megatron_adaptor`` routes those
calls to NPUs; imported first when ``torch_npu`` is present, unverified here). On a machine where
``torch.cuda.current_device()`` fails the engine refuses with that reason; the CPU tests make
it work with redirections that live in their fixture only.
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import torch

from r1zero.config.layout import stage_layers
from r1zero.engines import swap
from r1zero.engines.megatron import model as M
from r1zero.engines.megatron import moe, offload, replay
from r1zero.engines.megatron.moe import expert_sizes, global_expert, split_group
from r1zero.engines.megatron.packed import pack_rows
from r1zero.engines.precision import loss_scale_note
from r1zero.host.errors import BackendUnavailable, ConfigError

if TYPE_CHECKING:
    from r1zero.config.recipe import RecipeConfig

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
LossFn = Callable[[int, torch.Tensor, torch.Tensor], tuple[torch.Tensor, dict[str, float]]]


def require_megatron(device: bool = True) -> None:
    """megatron-core importable and (``device``) able to place tensors: a CUDA/NPU device, or
    redirected in tests. A Ray driver on a head node without devices checks the import only."""
    try:
        import torch_npu  # noqa: F401  - Ascend: MindSpeed patches megatron for NPUs
    except ImportError:
        pass
    else:
        import mindspeed.megatron_adaptor  # noqa: F401  - unverified on hardware
    try:
        import megatron.core  # noqa: F401
    except ImportError as exc:
        raise BackendUnavailable("megatron", f"megatron-core not importable ({exc}); "
                                 "pip install 'r1zero[megatron]'") from exc
    if not device:
        return
    try:
        torch.cuda.current_device()
    except Exception as exc:   # torch raises AssertionError/RuntimeError without a CUDA build
        raise BackendUnavailable("megatron", f"megatron-core needs a CUDA or NPU device "
                                 f"(torch.cuda.current_device(): {exc})") from exc


def init_parallel(tp: int, pp: int, seed: int, ep: int = 1,
                  moe_tp_extend_ep: bool = False) -> None:
    """parallel_state for tp x pp, routed experts over ep (x tp with ``moe_tp_extend_ep``)
    ranks, over the already initialised default process group."""
    from megatron.core import parallel_state as ps
    from megatron.core.tensor_parallel import model_parallel_cuda_manual_seed


    if ps.model_parallel_is_initialized():
        ps.destroy_model_parallel()
    emp, etp = expert_sizes(tp, ep, moe_tp_extend_ep)
    ps.initialize_model_parallel(tensor_model_parallel_size=tp, pipeline_model_parallel_size=pp,
                                 expert_model_parallel_size=emp,
                                 expert_tensor_parallel_size=etp)
    model_parallel_cuda_manual_seed(seed)


class MegatronTrainEngine:
    name = "megatron"
    # recipe keys this engine acts on (r1zero.config.engine_keys); the rest are refused
    implements = frozenset({"actor.distributed_optimizer", "actor.recompute",
                            "actor.use_dynamic_bsz", "actor.max_packing_token_size",
                            "actor.use_remove_padding", "actor.swap_optimizer",
                            "actor.initial_loss_scale", "algorithm.routing_replay",
                            "rollout.offload_train_params", "rollout.offload_train_grads"})
    reduces_grads = True         # megatron DDP leaves the data-parallel gradient
    schedules_micro_batches = True   # the trainer hands it a mini-batch's micro-batches at once
    weights_in_place = False     # the sampler takes ``full_weights()``

    def __init__(self, cfg: RecipeConfig, tokenizer: Any, device: str = "cpu", dist: Any = None):
        from transformers import AutoConfig

        require_megatron()

        a = cfg.actor
        if cfg.model.dtype == "float16":
            raise ConfigError("the megatron engine trains in float32 or bfloat16 (fp32 master "
                              "weights); float16 loss scaling is not implemented",
                              key="model.dtype")
        self.cfg, self.device = cfg, torch.device(device)
        self.tp, self.pp = a.tensor_parallel, a.pipeline_parallel
        self.ep, self.etp = moe.expert_sizes(self.tp, a.expert_parallel, a.moe_tp_extend_ep)
        self.dtype = self.compute_dtype = _DTYPES[cfg.model.dtype]
        hf_config = AutoConfig.from_pretrained(cfg.model.path)
        self.facts = M.arch_facts(hf_config)
        moe.check_layout(a, self.facts, torch.distributed.get_world_size())
        init_parallel(self.tp, self.pp, a.seed, a.expert_parallel, a.moe_tp_extend_ep)
        self.stages = _stage_layers(a.num_layer_list, self.pp, self.facts["layers"])
        hf_state = _hf_state(cfg.model.path, self.dtype)
        full = M.hf_to_mcore(self.facts, hf_state, self.tp, self.etp)
        self.model = self._build(full)
        self.ref = None
        if cfg.reference.enabled and cfg.algorithm.kl_coef > 0:
            self.ref = self._build(full).eval().requires_grad_(False)
        self.ddp, self.optimizer = _wrap_ddp_and_optimizer(self.model, cfg)
        self.routers: dict[str, list] = {}      # algorithm.routing_replay (megatron.replay)
        if replay.check(cfg, self.facts):
            models = {"actor": self.model, "ref": self.ref}
            self.routers = {name: replay.install(m, self.facts["moe_layers"])
                            for name, m in models.items() if m is not None}
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.updates = 0
        self._set_lr()

    # -- build ------------------------------------------------------------------------------
    def _build(self, full: dict[str, torch.Tensor]) -> torch.nn.Module:
        config = M.transformer_config(self.facts, tp=self.tp, pp=self.pp, dtype=self.dtype,
                                      num_layer_list=self.cfg.actor.num_layer_list,
                                      recompute=self.cfg.actor.recompute,
                                      ep=self.ep, etp=self.etp)
        # micro-batches of the token budget (actor.use_dynamic_bsz) differ in shape: the
        # pipeline then sends each one's shape ahead of it
        # (and packed rows, actor.use_remove_padding, each as wide as its sequences)
        a = self.cfg.actor
        config.variable_seq_lengths = (a.use_dynamic_bsz or a.use_remove_padding) and self.pp > 1
        gpt = M.build_gpt(self.facts, config, tp=self.tp)
        self.split_dims = load_shard(gpt, full, self.layer_offset())
        return gpt.to(self.device)

    def layer_offset(self, stage: int | None = None) -> int:
        from megatron.core import parallel_state as ps

        stage = ps.get_pipeline_model_parallel_rank() if stage is None else stage
        return sum(self.stages[:stage])

    # -- forward / backward -------------------------------------------------------------------
    def forward_backward(self, batches: Sequence[Any], temperature: float,
                         loss_fn: LossFn | None, model: torch.nn.Module | None = None
                         ) -> list[dict[str, Any]]:
        """Megatron's schedule over ``batches`` (``SeqBatch``). With ``loss_fn`` it backpropagates
        ``loss_fn(i, logp, entropy)`` of each micro-batch and returns its stats; without, it runs
        forward only and returns ``{"logp": (B_i, R_i)}`` per micro-batch. Results exist on the
        last pipeline stage; other stages get an empty list."""
        from megatron.core import parallel_state as ps
        from megatron.core.pipeline_parallel import get_forward_backward_func

        config = self.model.config
        multiple = self.tp if config.sequence_parallel else 1
        common = self.pp > 1 and not config.variable_seq_lengths
        if self.cfg.actor.use_remove_padding:       # engines.packing.PackedBatch
            packed = pack_rows(batches, self.pad_id, self.device, multiple, common)
        else:
            packed = pack(batches, self.pad_id, self.cfg.actor.micro_batch_size, self.device,
                          multiple, common=common)
        target = model if model is not None else self.ddp
        scale = len(packed) * ps.get_data_parallel_world_size()
        out: list[dict[str, Any]] = []
        routers = self.routers.get("ref" if target is self.ref else "actor", [])
        tp_split = self.tp if config.sequence_parallel else 1

        def step(data: Iterator, gpt: torch.nn.Module):
            i, mb = next(data)
            if routers:         # this micro-batch's recorded experts (routing replay)
                replay.set_plans(routers, mb.get("routes"), ps.get_tensor_model_parallel_rank(),
                                 tp_split)
            logits = gpt(mb["input_ids"], mb["position_ids"], mb["attention_mask"])
            return logits, functools.partial(self._loss, i, mb, temperature, loss_fn, scale, out)

        forward_only = loss_fn is None
        with torch.no_grad() if forward_only else contextlib.nullcontext():
            get_forward_backward_func()(
                forward_step_func=step, data_iterator=iter(enumerate(packed)), model=[target],
                num_microbatches=len(packed), seq_length=packed[0]["input_ids"].shape[1],
                micro_batch_size=packed[0]["input_ids"].shape[0], forward_only=forward_only)
        replay.set_plans(routers, None, 0, 1)
        return out

    def _loss(self, i: int, mb: dict, temperature: float, loss_fn: LossFn | None, scale: int,
              out: list, logits: torch.Tensor):
        if "gather" in mb:                          # a packed row (megatron.packed)
            logits = logits[0][mb["gather"]][..., :self.facts["vocab"]].float()
            response = mb["targets"]
        else:
            rows, width, p = mb["rows"], mb["response_width"], mb["prompt_width"]
            logits = logits[:rows, p - 1:p - 1 + width, :self.facts["vocab"]].float()
            response = mb["input_ids"][:rows, p:p + width]
        if temperature != 1.0:
            logits = logits / temperature
        logz = torch.logsumexp(logits, dim=-1)
        logp = logits.gather(-1, response.unsqueeze(-1)).squeeze(-1) - logz
        if loss_fn is None:
            out.append({"logp": logp.detach()})
            return logits.new_zeros(()), {}
        ent = logz - (torch.softmax(logits, dim=-1) * logits).sum(-1)
        loss, stats = loss_fn(i, logp, ent)
        out.append(stats)
        # the schedule divides by the micro-batch count and DDP averages over dp: undo both so
        # the gradient is the sum of the trainer's share-weighted micro-batch losses
        return loss * scale, {}

    def logprobs_of(self, batches: Sequence[Any], temperature: float,
                    reference: bool = False) -> list[torch.Tensor] | None:
        """(B_i, R_i) log-probs per batch from the actor or the reference; None off the last
        pipeline stage."""
        from megatron.core import parallel_state as ps

        model = self.ref if reference else self.ddp
        out = self.forward_backward(batches, temperature, None, model=model)
        return [o["logp"] for o in out] if ps.is_pipeline_last_stage() else None

    def train_micro_batches(self, batches: Sequence[Any], temperature: float,
                            loss_fn: LossFn) -> dict[str, float]:
        """``forward_backward`` with ``loss_fn``, then the micro-batches' stats summed and sent
        from the last pipeline stage to the others, so every rank returns the same dict."""
        from megatron.core import parallel_state as ps

        sums: dict[str, float] = {}
        for stats in self.forward_backward(batches, temperature, loss_fn):
            for k, v in stats.items():
                sums[k] = sums.get(k, 0.0) + v
        if self.pp == 1:
            return sums
        box = [sums]
        torch.distributed.broadcast_object_list(
            box, src=ps.get_pipeline_model_parallel_last_rank(),
            group=ps.get_pipeline_model_parallel_group())
        return box[0]

    def step(self, max_norm: float, check: Callable[[float], None] | None = None) -> float:
        """The gradient norm over all ranks; ``check(norm)`` (the trainer's guard, which may
        raise before anything changes), then clip to ``max_norm``, step the megatron optimizer
        (fp32 master weights, copied back to the model) and set the next step's lr."""
        from megatron.core.optimizer.clip_grads import clip_grad_by_total_norm_fp32

        opt = self.optimizer
        found_inf = opt.prepare_grads()
        norm = float("inf") if found_inf else float(opt.get_grad_norm())
        if check is not None:
            check(norm)
        if max_norm > 0:
            for sub in getattr(opt, "chained_optimizers", [opt]):
                params = sub.get_parameters()
                decoupled = getattr(sub.config, "use_precision_aware_optimizer_no_fp8_or_ds_fp8",
                                    False)
                if params:
                    clip_grad_by_total_norm_fp32(params, max_norm, norm,
                                                 use_decoupled_grad=decoupled)
        opt.step_with_ready_grads()
        self.ddp.zero_grad_buffer()
        opt.zero_grad()
        self.updates += 1
        self._set_lr()
        return norm

    def _set_lr(self) -> None:
        """The lr of the next optimizer step (warmup and schedule of ``engines.torch_engine``)."""
        from r1zero.engines.torch_engine import lr_lambda

        self.last_lr = self.cfg.actor.lr * lr_lambda(self.cfg.actor)(self.updates)
        for group in self.optimizer.param_groups:
            group["lr"] = self.last_lr

    def data_parallel(self) -> dict[str, Any]:
        """This rank's place for the trainer's data: its data-parallel rank, size and group, and
        its model-parallel group (tp x pp ranks holding one replica, which train on the same
        samples) with that group's first rank."""
        from megatron.core import parallel_state as ps

        mp = ps.get_model_parallel_group()
        return {"dp_rank": ps.get_data_parallel_rank(), "dp_world": ps.get_data_parallel_world_size(),
                "dp_group": ps.get_data_parallel_group(), "mp_group": mp,
                "mp_src": torch.distributed.get_process_group_ranks(mp)[0]}

    def rollout_phase(self):
        """``rollout.offload_train_params`` / ``_grads`` while the rollout generates
        (``engines.megatron.offload``)."""
        return offload.rollout_phase(self)

    def full_weights(self) -> Iterator[tuple[str, torch.Tensor]]:
        """(HF name, full tensor) pairs, layer by layer, on every rank (collective)."""
        from r1zero.engines.megatron.weights import gather_hf

        yield from gather_hf(self)

    def save_state(self, path: str | Path) -> None:
        """HF export, ``dist_checkpointing`` shards and the update count (collective;
        ``engines.megatron.state``): a checkpoint saved at one tp/pp layout loads at another."""
        from r1zero.engines.megatron import state

        state.save(self, Path(path))

    def load_state(self, path: str | Path) -> None:
        from r1zero.engines.megatron import state

        state.load(self, Path(path))
        self._set_lr()

    def sharded_state(self, loading: bool) -> dict[str, Any]:
        model = self.model.sharded_state_dict()
        # the distributed optimizer's default format (flattened ranges) is one megatron-core
        # 0.16.1's own save strategy refuses; the reshardable one gathers per parameter
        meta = {"distrib_optim_sharding_type": "fully_reshardable"}
        return {"model": model, "optimizer": self.optimizer.sharded_state_dict(
            model, is_loading=loading, metadata=meta)}

    def full_grads(self) -> Iterator[tuple[str, torch.Tensor]]:
        """(HF name, full reduced gradient) pairs after ``forward_backward`` (collective; not
        with the distributed optimizer, whose ranks keep only their shard of the reduction)."""
        from r1zero.engines.megatron.weights import gather_hf

        yield from gather_hf(self, grads=True)


def load_shard(gpt: torch.nn.Module, full: dict[str, torch.Tensor], offset: int) -> dict[str, int]:
    """Copy this rank's slice of each full mcore tensor into ``gpt`` (layer numbers + offset,
    local expert numbers + this expert-parallel rank's first expert); returns the
    tensor-parallel split dimension of each sliced parameter (the one dimension where its
    shape differs from the full tensor's; routed experts split over the expert-tensor group)."""
    experts = getattr(gpt.config, "num_moe_experts", None) or 0
    split: dict[str, int] = {}
    with torch.no_grad():
        for name, param in gpt.state_dict(keep_vars=True).items():
            if name.endswith("_extra_state") or "rotary_pos_emb" in name:
                continue
            key, expert = global_expert(_global_name(name, offset), experts)
            tp_rank, tp = split_group(expert)
            if key == "output_layer.weight" and key not in full:   # tied, last stage of pp > 1
                key = "embedding.word_embeddings.weight"
            src = full[key]
            dims = [d for d, (a, b) in enumerate(zip(param.shape, src.shape)) if a != b]
            if dims:
                split[name] = dims[0]
                src = src.chunk(tp, dim=dims[0])[tp_rank]
            # megatron marks tensor-parallel weights only when it initialises them itself;
            # grad-norm and clipping read the marks to count each slice once. Routed experts
            # are never copies across tp ranks (whole experts per rank with moe_tp_extend_ep).
            if (dims or expert) and not getattr(param, "tensor_model_parallel", False):
                dim = dims[0] if dims else int("linear_fc2" in name)
                for attr, value in (("tensor_model_parallel", True), ("partition_dim", dim),
                                    ("partition_stride", 1)):
                    setattr(param, attr, value)
            param.copy_(src.to(param.dtype))
    return split


def _global_name(name: str, offset: int) -> str:
    """decoder.layers.{local}.x -> decoder.layers.{local + offset}.x"""
    parts = name.split(".")
    if name.startswith("decoder.layers."):
        parts[2] = str(int(parts[2]) + offset)
    return ".".join(parts)


def _hf_state(path: str, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    return {k: v.detach() for k, v in model.state_dict().items()}


def _stage_layers(num_layer_list: list[int] | None, pp: int, layers: int) -> list[int]:
    return stage_layers(num_layer_list, pp, layers)


def _wrap_ddp_and_optimizer(gpt: torch.nn.Module, cfg: RecipeConfig):
    from megatron.core.distributed import (
        DistributedDataParallel,
        DistributedDataParallelConfig,
        finalize_model_grads,
    )
    from megatron.core.optimizer import OptimizerConfig, get_megatron_optimizer

    a = cfg.actor
    ddp = DistributedDataParallel(gpt.config, DistributedDataParallelConfig(
        grad_reduce_in_fp32=True, overlap_grad_reduce=False,
        use_distributed_optimizer=a.distributed_optimizer), module=gpt)
    gpt.config.finalize_model_grads_func = finalize_model_grads
    gpt.config.no_sync_func = ddp.no_sync
    dtype = _DTYPES[cfg.model.dtype]
    optimizer = get_megatron_optimizer(OptimizerConfig(
        optimizer="adam", lr=a.lr, weight_decay=a.weight_decay, adam_beta1=a.adam_beta1,
        adam_beta2=a.adam_beta2, adam_eps=a.adam_eps, clip_grad=a.clip_grad,
        bf16=dtype == torch.bfloat16, fp16=dtype == torch.float16, params_dtype=dtype,
        use_distributed_optimizer=a.distributed_optimizer,
        **({"initial_loss_scale": a.initial_loss_scale} if a.initial_loss_scale else {})),
        [ddp])                      # bf16: megatron builds no loss scaler (loss_scale_note)
    loss_scale_note(cfg)
    if a.swap_optimizer:            # each torch optimizer megatron chains steps its state in parts
        for sub in getattr(optimizer, "chained_optimizers", [optimizer]):
            swap.install(sub.optimizer, next(gpt.parameters()).device)
    return ddp, optimizer


def pack(batches: Sequence[Any], pad_id: int, rows: int, device: torch.device,
         multiple: int = 1, common: bool = True) -> list[dict]:
    """Micro-batches padded for megatron's schedule. ``common``: all to one shape (``rows`` x
    common width), which the pipeline's fixed p2p shapes need; otherwise each keeps its own
    rows and width (one stage, or ``variable_seq_lengths`` under ``actor.use_dynamic_bsz``).
    Widths are a multiple of ``multiple`` (sequence parallelism splits them over the tp ranks).
    Extra prompt columns on the left and response columns on the right are masked, extra rows
    are all padding. Attention mask: True where a query may not see a key."""
    shape = (max(rows, max(b.input_ids.shape[0] for b in batches)),
             max(b.prompt_width for b in batches), max(b.response_ids.shape[1] for b in batches))
    out = []
    for b in batches:
        n, pw, rw = b.input_ids.shape[0], b.prompt_width, b.response_ids.shape[1]
        m, p, r = shape if common else (n, pw, rw)
        r += -(p + r) % multiple
        ids = torch.full((m, p + r), pad_id, dtype=torch.long)
        valid = torch.zeros((m, p + r), dtype=torch.bool)
        pos = torch.zeros((m, p + r), dtype=torch.long)
        ids[:n, p - pw:p + rw] = b.input_ids.cpu()
        valid[:n, p - pw:p + rw] = b.attention_mask.cpu().bool()
        pos[:n, p - pw:p + rw] = b.position_ids.cpu()
        causal = torch.ones(p + r, p + r, dtype=torch.bool).triu(1)
        mask = causal.unsqueeze(0) | ~valid.unsqueeze(1)
        out.append({"input_ids": ids.to(device), "position_ids": pos.to(device),
                    "attention_mask": mask.unsqueeze(1).to(device), "rows": n,
                    "prompt_width": p, "response_width": rw,
                    "routes": replay.lay_out(getattr(b, "routes", None), m, p, p + r)})
    return out
