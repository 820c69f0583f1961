"""Routing replay (R3) in the megatron engine: with ``algorithm.routing_replay`` each MoE
layer's ``TopKRouter`` sends a response token to the experts the rollout chose for it
(``SeqBatch.routes``, recorded by the sampler: ``r1zero.engines.routing``), for the old,
reference and new log-probs alike.

megatron-core 0.16.1's top-k routing (``moe_utils.topk_routing_with_score_function``) asks the
router's ``router_replay`` object for the top-k of the routing scores. ``Replay`` stands in
there: it takes the router's own top-k, puts the recorded experts where a token has them
(-1: a prompt token, padding, a response's last token -- the router's own choice), and
gathers the scores at those experts. megatron then computes the gate weights from those
scores as for its own choice (DeepSeek-V3: the sigmoid scores without the expert bias,
renormalised over the k, times ``routed_scaling_factor``), so the router keeps its gradients.
megatron's own ``RouterReplay`` (``moe_enable_routing_replay``) replays every token, keeps its
instances in one process-wide list (the actor and the reference would share it) and leaves
the backward's recomputation to its caller; it is not used.

Token order: the router sees a micro-batch as (sequence, batch) flattened sequence-major; under
sequence parallelism each tensor-parallel rank routes its contiguous part of the sequence. A
router's plan is the micro-batch's (rows, width, moe layers, k) routes, laid out that way, at
its MoE layer's ordinal (``router.layer_number`` is the global layer number).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from r1zero.host.errors import ConfigError

if TYPE_CHECKING:
    from r1zero.config.recipe import RecipeConfig


class Replay:
    """One router's replay: ``plan`` (tokens, k) int64 experts, -1 where the router chooses."""

    def __init__(self) -> None:
        self.plan: torch.Tensor | None = None

    def get_replay_topk(self, scores: torch.Tensor, topk: int, num_groups: int | None = None,
                        group_topk: int | None = None,
                        default_compute_topk: Callable | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        """(tokens, experts) routing scores -> (tokens, k) scores and experts, as megatron's
        ``_compute_topk`` returns them, with the plan's experts where it has them."""
        values, own = default_compute_topk(scores, topk, num_groups, group_topk)
        if self.plan is None:
            return values, own
        want = self.plan.to(own.device)
        if want.shape != own.shape:
            raise ValueError(f"routing replay: the router routed {tuple(own.shape)} tokens x "
                             f"experts, the recorded routes are {tuple(want.shape)}")
        idx = torch.where(want >= 0, want, own)
        return scores.gather(1, idx), idx


def check(cfg: RecipeConfig, facts: dict[str, Any]) -> bool:
    """``algorithm.routing_replay`` for the megatron engine, refused by name where it cannot
    act: a dense model; packed rows (``actor.use_remove_padding``: the routes are laid out on
    padded rows); full recomputation with pipeline stages (the backward recomputes a
    micro-batch's layers after later micro-batches' forwards have set their plans)."""
    if not cfg.algorithm.routing_replay:
        return False
    key = "algorithm.routing_replay"
    if not facts.get("experts"):
        raise ConfigError(f"model {cfg.model.path} has no routed experts to replay (a dense "
                          "model)", key=key)
    if cfg.actor.use_remove_padding:
        raise ConfigError("routing replay lays routes out on padded rows; unset "
                          "actor.use_remove_padding", key=key)
    if cfg.actor.recompute == "full" and cfg.actor.pipeline_parallel > 1:
        raise ConfigError("with actor.recompute full and pipeline_parallel > 1 the backward "
                          "recomputes a micro-batch after later ones set their routes (1F1B); "
                          "not built: use recompute none/selective or pipeline_parallel 1",
                          key=key)
    return True


def install(model: torch.nn.Module, moe_layers: list[int]) -> list[tuple[Any, int]]:
    """A ``Replay`` on every ``TopKRouter`` of ``model``; returns (router, MoE ordinal) pairs
    (``moe_layers``: 1 per MoE layer of the whole model, 0 per dense layer)."""
    from megatron.core.transformer.moe.router import TopKRouter

    out = []
    for m in model.modules():
        if isinstance(m, TopKRouter):
            if m.config.moe_router_fusion:
                raise ConfigError("routing replay needs the unfused router (TransformerEngine's "
                                  "fused top-k has no replay hook)", key="algorithm.routing_replay")
            m.router_replay = Replay()
            out.append((m, sum(moe_layers[:m.layer_number - 1])))
    return out


def lay_out(routes: torch.Tensor | None, rows: int, prompt: int, width: int) -> torch.Tensor | None:
    """A micro-batch's (n, R, L, k) response routes -> (rows, width, L, k) on megatron's
    padded layout (response token j at column ``prompt + j``), -1 elsewhere."""
    if routes is None:
        return None
    n, r = routes.shape[:2]
    out = torch.full((rows, width, *routes.shape[2:]), -1, dtype=torch.int64)
    out[:n, prompt:prompt + r] = routes.long()
    return out


def set_plans(routers: list[tuple[Any, int]], laid: torch.Tensor | None, tp_rank: int,
              tp: int) -> None:
    """Each router's plan from (rows, width, L, k) ``laid`` (None: every router chooses):
    sequence-major tokens, this tensor-parallel rank's part of the sequence when ``tp`` > 1
    (sequence parallelism)."""
    flat = None
    if laid is not None:
        seq_major = laid.transpose(0, 1)
        if tp > 1:
            seq_major = seq_major.chunk(tp, dim=0)[tp_rank]
        flat = seq_major.reshape(-1, *laid.shape[2:])
    for router, ordinal in routers:
        router.router_replay.plan = None if flat is None else flat[:, ordinal]
