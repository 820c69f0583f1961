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
from r1zero.host.errors import TrainingError

if TYPE_CHECKING:
    from r1zero.config.recipe import RecipeConfig


class SamplerRolloutEngine:
    """Generation with ``r1zero.engines.sampler.Sampler`` from the actor's weights: in place when
    ``train_engine.weights_in_place`` and the rollout's dtype is the actor's, else from a
    full copy in the rollout's dtype that ``sync_weights`` refreshes from
    ``train_engine.full_weights()`` one tensor at a time. Returns each response token's
    log-prob (``SampleOutput.logprobs``), so it implements ``algorithm.rollout_correction``."""

    name = "sampler"
    # rollout.tensor_parallel / pipeline_parallel: the size of a rollout instance in ranks
    # (trainer.dist.lay_out_instances); the sampler does not shard, it generates on the
    # instance's first rank
    implements = frozenset({"rollout.min_p", "rollout.dtype", "algorithm.rollout_correction",
                            "algorithm.routing_replay", "rollout.tensor_parallel",
                            "rollout.pipeline_parallel"})
    synced_at_build = True      # __init__ syncs a copy (a collective on sharded engines)

    def __init__(self, cfg: RecipeConfig, train_engine: Any, tokenizer: Any,
                 stops: Sequence[Sequence[int]]):
        self.cfg, self.train_engine = cfg, train_engine
        self.stops = [tuple(s) for s in stops]
        self.overlapped = False     # generating beside the update (``own_weights``)
        own_dtype = rollout_dtype(cfg)
        if train_engine.weights_in_place and own_dtype == torch.float32:
            self.model = train_engine.model
        else:
            self.model = rollout_copy(cfg, train_engine.device, own_dtype)
            self.sync_weights()
        self.sampler = Sampler(self.model, self.stops, train_engine.pad_id)

    def own_weights(self, device: Any = None) -> None:
        """Generate from a copy of the weights of its own, on ``device`` (default the actor's):
        for a rollout that runs while the actor trains (``trainer.async_rollout``). The actor's
        training state then never moves for the rollout (no ``rollout_phase``)."""
        self.overlapped = True
        if self.model is self.train_engine.model or device is not None:
            self.model = rollout_copy(self.cfg, device or self.train_engine.device,
                                      rollout_dtype(self.cfg))
            self.sampler = Sampler(self.model, self.stops, self.train_engine.pad_id)
            self.sync_weights()

    def generate(self, prompts: Sequence[Sequence[int]], n: int,
                 generator: torch.Generator | None = None, seeds: Sequence[int] | None = None,
                 **sampling: Any):
        """``sampling``: further ``Sampler.generate`` arguments (``uniforms``, ``interrupt``,
        ``max_new_tokens`` for a continued partial rollout)."""
        r = self.cfg.rollout
        phase = contextlib.nullcontext if self.overlapped else \
            getattr(self.train_engine, "rollout_phase", contextlib.nullcontext)
        args = {"max_new_tokens": r.max_response_length, "temperature": r.temperature,
                "top_p": r.top_p, "top_k": r.top_k, "min_p": r.min_p,
                "record_routes": self.cfg.algorithm.routing_replay, **sampling}
        with phase():
            return self.sampler.generate(prompts, n, generator=generator, seeds=seeds, **args)

    @torch.no_grad()
    def sync_weights(self, weights: Any = None) -> None:
        """Copy the actor's full weights (or the (name, tensor) pairs ``weights``) into the
        sampler's model (nothing to do in place)."""
        if self.model is self.train_engine.model:
            return
        own = self.model.state_dict()
        for name, tensor in (self.train_engine.full_weights() if weights is None else weights):
            own[name].copy_(tensor)


class WeightRelay:
    """The rollout side of a rank that does not generate (a rollout instance's rank other than
    its first, ``trainer.dist.DataParallel.generates``): it holds no rollout model. Gathering
    the actor's full weights is collective (``full_weights()`` of the megatron and fsdp
    engines), so ``sync_weights`` takes this rank's part in the gather -- iterating it, one
    tensor at a time, dropping each -- while the generating rank loads them."""

    name = "relay"
    implements = frozenset()

    def __init__(self, cfg: RecipeConfig, train_engine: Any, synced_at_build: bool = False):
        """``synced_at_build``: the generating ranks' engine syncs in its constructor (the
        sampler), so this rank takes its part in that gather now too."""
        self.cfg, self.train_engine = cfg, train_engine
        self.synced_at_build = synced_at_build
        if synced_at_build:
            self.sync_weights()

    def sync_weights(self) -> None:
        for _ in self.train_engine.full_weights():
            pass

    def generate(self, *args: Any, **kwargs: Any):
        raise TrainingError("this rank does not generate: its model-parallel group's first "
                            "rank holds the rollout model and shares the samples")

    def close(self) -> None:
        pass


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
