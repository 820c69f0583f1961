"""The training engine for one torch device (cpu, cuda, npu), and the engine interface.

The train-engine interface the GRPO trainer calls (``TorchTrainEngine`` on one device,
``engines.fsdp.FSDPTrainEngine`` sharded over ranks; other engines implement the same):

    model, ref            actor (trained) and frozen reference modules, or ref None
    optimizer, scheduler  torch optimizer and lr schedule over the actor's fp32 master weights
    device, pad_id        where batches go; the padding token
    reduces_grads         True when backward already leaves the data-parallel gradient (FSDP)
    logprobs(model, batch, temperature, with_entropy) -> (B, R) log-probs[, entropies]
    backward(loss)        loss.backward(), scaled under fp16 dynamic loss scaling
    step(max_norm, check) -> grad norm before clipping; ``check(norm)`` (may raise), then clips,
                          steps optimizer and schedule, zeroes grads
    full_weights()        (HF name, full fp32 tensor) pairs, layer by layer (rollout weight sync)
    weights_in_place      True when a sampler may read ``model`` itself (one device, fp32)
    save_state(dir) / load_state(dir)   weights, optimizer, schedule, loss scale

Weights and optimizer state are float32; forwards compute in ``model.dtype``
(``engines.precision``). Rollout engines (``engines.rollout``, ``engines.vllm``) generate from
these weights.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import inspect
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Sequence

import torch

from r1zero.engines import packing, routing, swap
from r1zero.engines.precision import autocast, clip_and_step, compute_dtype, make_scaler
from r1zero.engines.state import load_engine_state, save_engine_state
from r1zero.host.errors import ConfigError

if TYPE_CHECKING:
    from r1zero.config.recipe import RecipeConfig


class ScaledAdamWEngine:
    """What the torch and fsdp engines share (each sets ``model``, ``optimizer``,
    ``scheduler``, ``scaler``): the loss-scaled backward, the clipped optimizer step and the
    engine-state files of ``engines.state``."""
    def backward(self, loss: torch.Tensor) -> None:
        self.scaler.scale_loss(loss).backward()

    def step(self, max_norm: float, check: Any = None) -> float:
        return clip_and_step(self, max_norm, check)

    def save_state(self, out: Path) -> None:
        save_engine_state(self, out)

    def load_state(self, src: Path) -> None:
        load_engine_state(self, src)


class TorchTrainEngine(ScaledAdamWEngine):
    """The actor on one device: fp32 master weights, autocast to ``model.dtype``. ``name`` and
    ``implements`` declare the optional recipe keys it acts on (``r1zero.config.engine_keys``)."""
    name = "torch"
    implements: frozenset[str] = frozenset({
        "actor.recompute", "actor.initial_loss_scale", "actor.use_dynamic_bsz",
        "actor.max_packing_token_size", "actor.use_remove_padding", "actor.swap_optimizer",
        "rollout.offload_train_params",
        "rollout.offload_train_grads", "rollout.offload_train_optimizer",
        "algorithm.routing_replay"})

    reduces_grads = False

    def __init__(self, cfg: RecipeConfig, tokenizer: Any, device: str = "cpu"):
        self.cfg, self.device = cfg, torch.device(device)
        self.compute_dtype = compute_dtype(cfg)
        self.scaler = make_scaler(cfg)
        self.model = load_actor(cfg).to(self.device)
        self.share_prompts = set_recompute(self.model, cfg, "torch")
        self.weights_in_place = self.compute_dtype == torch.float32
        if cfg.actor.use_remove_padding:
            packing.enable(self.model)
        self.replay = check_replay(cfg, self.model)
        self.ref = None
        if cfg.reference.enabled and cfg.algorithm.kl_coef > 0:
            self.ref = copy.deepcopy(self.model).eval().requires_grad_(False)
        self.optimizer, self.scheduler = make_optimizer(cfg, self.model.parameters(), self.device)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def logprobs(self, model: torch.nn.Module, batch: "SeqBatch", temperature: float,
                 with_entropy: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, R) log-probs of the response tokens (and their entropies when asked)."""
        if isinstance(batch, packing.PackedBatch):     # routing replay refuses packing
            return packing.packed_logprobs(model, batch, temperature, with_entropy,
                                           autocast(self.device, self.compute_dtype))
        plans = routing.replay_plans(batch, self.share_prompts) if self.replay else []
        with autocast(self.device, self.compute_dtype), routing.replay(model, plans):
            logits = response_logits(model, batch, self.share_prompts)
        return token_logprobs(logits, batch, temperature, with_entropy)

    def full_weights(self) -> Iterator[tuple[str, torch.Tensor]]:
        for name, t in self.model.state_dict().items():
            yield name, t.detach()

    def rollout_phase(self):
        return offload_for_rollout(self)


@contextlib.contextmanager
def offload_for_rollout(engine: Any, skip: bool = False):
    """While generating, the actor's training state leaves the accelerator as
    ``rollout.offload_train_params`` / ``_optimizer`` ask (gradients are already freed after
    each step; parameters stay when the sampler reads them in place). On the cpu backend the
    state lives in host memory already: nothing moves."""
    r, device = engine.cfg.rollout, engine.device
    params = r.offload_train_params and not engine.weights_in_place
    optim = r.offload_train_optimizer and not engine.cfg.actor.swap_optimizer   # host already
    moved = device.type != "cpu" and not skip and (params or optim)
    if moved:
        _move_train_state(engine, "cpu", params, optim)
    try:
        yield
    finally:
        if moved:
            _move_train_state(engine, device, params, optim)


def _move_train_state(engine: Any, device: Any, params: bool, optimizer: bool) -> None:
    if params:
        engine.model.to(device)
    if optimizer:
        for state in engine.optimizer.state.values():
            for k, v in state.items():
                if torch.is_tensor(v) and v.dim():
                    state[k] = v.to(device)
    if engine.device.type == "cuda" and device == "cpu":
        torch.cuda.empty_cache()


def load_actor(cfg: RecipeConfig) -> torch.nn.Module:
    """The HF model of ``model.path`` in float32 (the master weights), train mode, no KV cache."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(
        cfg.model.path, dtype=torch.float32, trust_remote_code=cfg.model.trust_remote_code)
    model.config.use_cache = False
    return model.train()


def set_recompute(model: torch.nn.Module, cfg: RecipeConfig, engine: str) -> bool:
    """``actor.recompute: full`` -> activation checkpointing of every decoder layer (recomputed
    in backward). Returns whether forwards may share a prompt's KV cache (not under recompute)."""
    mode = cfg.actor.recompute
    if mode == "selective":
        raise ConfigError(f"recompute 'selective' is not implemented by the {engine} engine; use "
                          "'full' (activation checkpointing per decoder layer) or 'none'",
                          key="actor.recompute")
    if mode == "full":
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return mode == "none"


def make_optimizer(cfg: RecipeConfig, params: Iterable[torch.nn.Parameter],
                   device: torch.device | None = None):
    """AdamW over ``params`` and its lr schedule (``lr_lambda``); with ``actor.swap_optimizer``
    its state lives on the host and comes to ``device`` for the step in parts
    (``engines.swap``)."""
    a = cfg.actor
    opt = torch.optim.AdamW(params, lr=a.lr, betas=(a.adam_beta1, a.adam_beta2), eps=a.adam_eps,
                            weight_decay=a.weight_decay)
    if a.swap_optimizer:
        swap.install(opt, device or torch.device("cpu"))
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(a))


def token_logprobs(logits: torch.Tensor, batch: "SeqBatch", temperature: float,
                   with_entropy: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(B, R, V) logits -> (B, R) float32 log-probs of the response tokens[, entropies]."""
    logits = logits.float()
    if temperature != 1.0:
        logits = logits / temperature
    logz = torch.logsumexp(logits, dim=-1)
    logp = logits.gather(-1, batch.response_ids.unsqueeze(-1)).squeeze(-1) - logz
    ent = None
    if with_entropy:
        probs = torch.softmax(logits, dim=-1)
        ent = logz - (probs * logits).sum(-1)
    return logp, ent


def check_replay(cfg: RecipeConfig, model: torch.nn.Module) -> bool:
    """``algorithm.routing_replay``, refused by name where it cannot act: a model with no
    top-k MoE router, or packed micro-batches (``actor.use_remove_padding``)."""
    if not cfg.algorithm.routing_replay:
        return False
    if not routing.moe_routers(model):
        raise ConfigError(f"model {cfg.model.path} has no top-k MoE router to replay "
                          "(Qwen2-MoE, Qwen3-MoE, DeepSeek-V3)", key="algorithm.routing_replay")
    if cfg.actor.use_remove_padding:
        raise ConfigError("routing replay lays routes out on padded rows; unset "
                          "actor.use_remove_padding", key="algorithm.routing_replay")
    return True


def response_logits(model: torch.nn.Module, batch: "SeqBatch", share: bool = True) -> torch.Tensor:
    """(B, R, V) logits that predict the response tokens (position t predicts token t+1).

    When rows share a prompt (``batch.shared``: the n samples of a GRPO group), each distinct
    prompt runs once and its keys/values are gathered for the rows that continue it. Exact,
    since a prompt token never attends to a response token; it saves (B - G) * P positions of
    forward and backward (~40% of a step at P ~ R). ``share`` False runs every row whole (under
    activation checkpointing, which drops the KV cache the shared form needs).
    """
    pw = batch.prompt_width
    if not batch.shared or not share:
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                       position_ids=batch.position_ids).logits
        return logits[:, pw - 1:-1]
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config)
    kw, keep = _forward_kwargs(type(model))
    head = model(input_ids=batch.prompt_ids, attention_mask=batch.prompt_mask,
                 position_ids=batch.prompt_positions, use_cache=True, **{kw: cache},
                 **keep).logits[:, -1:]
    cache.batch_select_indices(batch.row_prompt)   # (G, ...) -> (B, ...), differentiable
    rest = model(input_ids=batch.response_ids, attention_mask=batch.attention_mask,
                 position_ids=batch.position_ids[:, pw:], use_cache=True, **{kw: cache}).logits
    return torch.cat([head[batch.row_prompt], rest[:, :-1]], dim=1)


@functools.lru_cache(maxsize=None)
def _forward_kwargs(model_cls: type) -> tuple[str, dict]:
    """The cache argument's name (transformers 5 renamed ``past_key_values`` to ``cache``) and
    ``logits_to_keep=1`` where the model takes it (no LM head over prompt positions)."""
    params = inspect.signature(model_cls.forward).parameters
    kw = "cache" if "cache" in params else "past_key_values"
    return kw, ({"logits_to_keep": 1} if "logits_to_keep" in params else {})


def lr_lambda(a: Any):
    """Multiplier of the base lr at optimizer step s: warmup, then constant/linear/cosine."""
    def f(step: int) -> float:
        if a.lr_warmup_steps and step < a.lr_warmup_steps:
            return (step + 1) / a.lr_warmup_steps
        if a.lr_scheduler == "constant":
            return 1.0
        span = max(1, a.train_iters - a.lr_warmup_steps)
        frac = min(1.0, (step - a.lr_warmup_steps) / span)
        floor = a.min_lr / a.lr
        shape = 1 - frac if a.lr_scheduler == "linear" else 0.5 * (1 + math.cos(math.pi * frac))
        return floor + (1 - floor) * shape
    return f


class SeqBatch:
    """Prompt+response sequences laid out for one forward pass.

    Prompts are left-padded to ``prompt_width`` and responses right-padded to R, so the
    response of every row starts at the same column and log-probs line up as (B, R).
    The G distinct prompts are also kept once: ``prompt_ids`` / ``prompt_mask`` /
    ``prompt_positions`` (G, P) and ``row_prompt`` (B,), each row's prompt; ``shared`` is
    True when G < B.
    """
    def __init__(self, prompts: Sequence[Sequence[int]], responses: Sequence[Sequence[int]],
                 pad_id: int, device: torch.device):
        b = len(prompts)
        self.prompt_width = max(len(p) for p in prompts)
        width = max(1, max(len(r) for r in responses))
        ids = torch.full((b, self.prompt_width + width), pad_id, dtype=torch.long)
        attn = torch.zeros_like(ids)
        for i, (p, r) in enumerate(zip(prompts, responses)):
            start = self.prompt_width - len(p)
            ids[i, start:self.prompt_width] = torch.tensor(p, dtype=torch.long)
            if r:
                ids[i, self.prompt_width:self.prompt_width + len(r)] = torch.tensor(r, dtype=torch.long)
            attn[i, start:self.prompt_width + len(r)] = 1
        self.input_ids = ids.to(device)
        self.attention_mask = attn.to(device)
        self.position_ids = (attn.cumsum(-1) - 1).clamp(min=0).to(device)
        self.response_ids = self.input_ids[:, self.prompt_width:]
        self.response_mask = attn[:, self.prompt_width:].to(device=device, dtype=torch.float32)
        first: dict[tuple[int, ...], int] = {}     # distinct prompt -> its index g
        rows, row_prompt = [], []                   # rows[g]: first row with prompt g
        for i, p in enumerate(prompts):
            g = first.setdefault(tuple(p), len(first))
            if g == len(rows):
                rows.append(i)
            row_prompt.append(g)
        self.shared = len(first) < b
        self.row_prompt = torch.tensor(row_prompt, dtype=torch.long, device=device)
        self.prompt_ids = self.input_ids[rows, :self.prompt_width]
        self.prompt_mask = self.attention_mask[rows, :self.prompt_width]
        self.prompt_positions = self.position_ids[rows, :self.prompt_width]
