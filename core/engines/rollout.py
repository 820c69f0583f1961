"""The lean-sampler rollout engine: generation with ``r1zero.engines.sampler.Sampler`` from the
actor's own weights when they are usable as they are (colocated, like MindSpeed-RL's integrated
worker), else from a compute-dtype copy refreshed from ``full_weights()`` after each step."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Sequence

import torch
from r1zero.engines.precision import compute_dtype
from r1zero.engines.sampler import Sampler

if TYPE_CHECKING:
    from r1zero.config.recipe import RecipeConfig


class SamplerRolloutEngine:
    """Generation with ``r1zero.engines.sampler.Sampler`` from the actor's weights: in place when
    ``train_engine.weights_in_place``, else from a full copy in the compute dtype that
    ``sync_weights`` refreshes from ``train_engine.full_weights()`` one tensor at a time."""

    name = "sampler"
    implements = frozenset({"rollout.min_p"})

    def __init__(self, cfg: RecipeConfig, train_engine: Any, tokenizer: Any,
                 stops: Sequence[Sequence[int]]):
        self.cfg, self.train_engine = cfg, train_engine
        if train_engine.weights_in_place:
            self.model = train_engine.model
        else:
            self.model = rollout_copy(cfg, train_engine.device)
            self.sync_weights()
        self.sampler = Sampler(self.model, [tuple(s) for s in stops], train_engine.pad_id)

    def generate(self, prompts: Sequence[Sequence[int]], n: int,
                 generator: torch.Generator | None = None, seeds: Sequence[int] | None = None):
        r = self.cfg.rollout
        phase = getattr(self.train_engine, "rollout_phase", contextlib.nullcontext)
        with phase():
            return self.sampler.generate(prompts, n, r.max_response_length,
                                         temperature=r.temperature, top_p=r.top_p, top_k=r.top_k,
                                         generator=generator, min_p=r.min_p, seeds=seeds)

    @torch.no_grad()
    def sync_weights(self) -> None:
        """Copy the actor's full weights into the sampler's model (nothing to do in place)."""
        if self.model is self.train_engine.model:
            return
        own = self.model.state_dict()
        for name, tensor in self.train_engine.full_weights():
            own[name].copy_(tensor)


def rollout_copy(cfg: RecipeConfig, device: torch.device) -> torch.nn.Module:
    """An empty (weights to be synced) eval-mode model of ``model.path``'s architecture in the
    compute dtype, on ``device``."""
    from transformers import AutoConfig, AutoModelForCausalLM

    hf = AutoConfig.from_pretrained(cfg.model.path, trust_remote_code=cfg.model.trust_remote_code)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(hf, dtype=compute_dtype(cfg),
                                                 trust_remote_code=cfg.model.trust_remote_code)
    return model.eval().requires_grad_(False)
