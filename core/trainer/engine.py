"""Training and rollout engines for torch devices (cpu, cuda, npu).

``TorchTrainEngine`` holds the actor, the frozen reference, the optimizer and the lr schedule
and computes per-token log-probs. ``SamplerRolloutEngine`` generates with r1zero's lean sampler
from the actor's own weights (colocated, like MindSpeed-RL's integrated worker), so weight
sync after an optimizer step costs nothing.
"""

from __future__ import annotations

import copy
import functools
import inspect
import math
from typing import Any, Sequence

import torch

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class TorchTrainEngine:
    """The actor, reference, optimizer and schedule on one torch device.

    ``name`` and ``implements`` are the engine interface's declaration of which optional
    recipe keys it acts on (``r1zero.config.engine_keys``): none, so e.g. ``actor.recompute``
    is refused before step 1 with this engine. An engine that implements a key lists it.
    """

    name = "torch"
    implements: frozenset[str] = frozenset()

    def __init__(self, cfg: Any, tokenizer: Any, device: str = "cpu"):
        from transformers import AutoModelForCausalLM

        self.cfg, self.device = cfg, torch.device(device)
        dtype = _DTYPES[cfg.model.dtype]
        self.model = AutoModelForCausalLM.from_pretrained(
            cfg.model.path, dtype=dtype, trust_remote_code=cfg.model.trust_remote_code).to(self.device)
        self.model.config.use_cache = False
        self.model.train()
        self.ref = None
        if cfg.reference.enabled and cfg.algorithm.kl_coef > 0:
            self.ref = copy.deepcopy(self.model).eval().requires_grad_(False)
        a = cfg.actor
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=a.lr, betas=(a.adam_beta1, a.adam_beta2), eps=a.adam_eps,
            weight_decay=a.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda(a))
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def logprobs(self, model: torch.nn.Module, batch: "SeqBatch", temperature: float,
                 with_entropy: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, R) log-probs of the response tokens (and their entropies when asked)."""
        logits = response_logits(model, batch).float()
        if temperature != 1.0:
            logits = logits / temperature
        logz = torch.logsumexp(logits, dim=-1)
        logp = logits.gather(-1, batch.response_ids.unsqueeze(-1)).squeeze(-1) - logz
        ent = None
        if with_entropy:
            probs = torch.softmax(logits, dim=-1)
            ent = logz - (probs * logits).sum(-1)
        return logp, ent


def response_logits(model: torch.nn.Module, batch: "SeqBatch") -> torch.Tensor:
    """(B, R, V) logits that predict the response tokens (position t predicts token t+1).

    When rows share a prompt (``batch.shared``: the n samples of a GRPO group), each distinct
    prompt runs once and its keys/values are gathered for the rows that continue it. Exact,
    since a prompt token never attends to a response token; it saves (B - G) * P positions of
    forward and backward (~40% of a step at P ~ R).
    """
    pw = batch.prompt_width
    if not batch.shared:
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


class SamplerRolloutEngine:
    """Generation from the actor's weights with ``r1zero.trainer.sampler.Sampler``."""

    name = "sampler"
    implements = frozenset({"rollout.min_p"})

    def __init__(self, cfg: Any, train_engine: TorchTrainEngine, tokenizer: Any,
                 stops: Sequence[Sequence[int]]):
        from r1zero.trainer.sampler import Sampler

        self.cfg = cfg
        self.sampler = Sampler(train_engine.model, [tuple(s) for s in stops], train_engine.pad_id)

    def generate(self, prompts: Sequence[Sequence[int]], n: int,
                 generator: torch.Generator | None = None):
        r = self.cfg.rollout
        return self.sampler.generate(prompts, n, r.max_response_length, temperature=r.temperature,
                                     top_p=r.top_p, top_k=r.top_k, generator=generator,
                                     min_p=r.min_p)

    def sync_weights(self) -> None:
        """The sampler reads the actor's parameters in place: nothing to copy."""
