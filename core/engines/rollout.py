"""The lean-sampler rollout engine: generation with ``r1zero.engines.sampler.Sampler`` from the
actor's own weights when they are usable as they are (colocated, like MindSpeed-RL's integrated
worker), else from a copy in the rollout's dtype (``rollout.dtype``, else ``model.dtype``)
refreshed from ``full_weights()`` after each step."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Sequence

import torch
from r1zero.engines.precision import compute_dtype, rollout_dtype
from r1zero.engines.sampler import Sampler

if TYPE_CHECKING:
    from r1zero.config.recipe import RecipeConfig


class SamplerRolloutEngine:
    """Generation with ``r1zero.engines.sampler.Sampler`` from the actor's weights: in place when
    ``train_engine.weights_in_place`` and the rollout's dtype is the actor's, else from a
    full copy in the rollout's dtype that ``sync_weights`` refreshes from
    ``train_engine.full_weights()`` one tensor at a time. Returns each response token's
    log-prob (``SampleOutput.logprobs``), so it implements ``algorithm.rollout_correction``."""

    name = "sampler"
    implements = frozenset({"rollout.min_p", "rollout.dtype", "algorithm.rollout_correction",
                            "algorithm.routing_replay"})

    def __init__(self, cfg: RecipeConfig, train_engine: Any, tokenizer: Any,
                 stops: Sequence[Sequence[int]]):
        self.cfg, self.train_engine = cfg, train_engine
        own_dtype = rollout_dtype(cfg)
        if train_engine.weights_in_place and own_dtype == torch.float32:
            self.model = train_engine.model
        else:
            self.model = rollout_copy(cfg, train_engine.device, own_dtype)
            self.sync_weights()
        self.sampler = Sampler(self.model, [tuple(s) for s in stops], train_engine.pad_id)

    def generate(self, prompts: Sequence[Sequence[int]], n: int,
                 generator: torch.Generator | None = None, seeds: Sequence[int] | None = None):
        r = self.cfg.rollout
        phase = getattr(self.train_engine, "rollout_phase", contextlib.nullcontext)
        with phase():
            return self.sampler.generate(prompts, n, r.max_response_length,
                                         temperature=r.temperature, top_p=r.top_p, top_k=r.top_k,
                                         generator=generator, min_p=r.min_p, seeds=seeds,
                                         record_routes=self.cfg.algorithm.routing_replay)

    @torch.no_grad()
    def sync_weights(self) -> None:
        """Copy the actor's full weights into the sampler's model (nothing to do in place)."""
        if self.model is self.train_engine.model:
            return
        own = self.model.state_dict()
        for name, tensor in self.train_engine.full_weights():
            own[name].copy_(tensor)


def rollout_copy(cfg: RecipeConfig, device: torch.device,
                 dtype: torch.dtype | None = None) -> torch.nn.Module:
    """An empty (weights to be synced) eval-mode model of ``model.path``'s architecture in
    ``dtype`` (default: the compute dtype), on ``device``."""
    from transformers import AutoConfig, AutoModelForCausalLM

    hf = AutoConfig.from_pretrained(cfg.model.path, trust_remote_code=cfg.model.trust_remote_code)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(hf, dtype=dtype or compute_dtype(cfg),
                                                 trust_remote_code=cfg.model.trust_remote_code)
    return model.eval().requires_grad_(False)
