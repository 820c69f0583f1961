"""Routing replay (R3) for MoE models: the rollout records each response token's top-k experts
per MoE layer, and the actor reuses them, so both compute the same experts' outputs.

Why: the rollout and the actor compute router logits with different kernels; a near-tie
between two experts flips, and the token goes through other experts in the actor than in
the rollout. Replay takes the expert choice from the rollout and recomputes only the gate's
weights for those experts from the actor's own router logits, so the router still gets
gradients (Megatron-LM issue #4168; verl, slime: "R3").

Works on HF top-k routers whose forward returns (router_logits, weights, indices) with the
attributes ``top_k`` and ``num_experts``: Qwen2-MoE / Qwen3-MoE (softmax, optional top-k
renormalisation) and DeepSeek-V3 (sigmoid, optional renormalisation, times
``routed_scaling_factor``). Routes are int16 tensors (tokens, layers, top_k); -1 marks a
token left to the router (a prompt token, a response's last token, which no log-prob reads).
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Sequence

import torch
from torch import Tensor, nn


def moe_routers(model: nn.Module) -> list[nn.Module]:
    """The model's top-k routers in layer order (empty for a dense model)."""
    return [m for m in model.modules() if type(m).__name__.lower().endswith("topkrouter")
            and hasattr(m, "top_k") and hasattr(m, "num_experts")]


def gate_weights(router: nn.Module, logits: Tensor, idx: Tensor) -> Tensor:
    """(N, E) router logits, (N, k) chosen experts -> (N, k) gate weights, as the router
    computes them for its own choice: softmax (Qwen2/3-MoE) or sigmoid with
    ``routed_scaling_factor`` (DeepSeek-V3), renormalised over the k when ``norm_topk_prob``."""
    if hasattr(router, "routed_scaling_factor"):          # DeepSeek-V3
        w = logits.float().sigmoid().gather(-1, idx)
        if router.norm_topk_prob:
            w = w / (w.sum(-1, keepdim=True) + 1e-20)
        return (w * router.routed_scaling_factor).to(logits.dtype)
    w = torch.softmax(logits, dim=-1, dtype=torch.float).gather(-1, idx)
    if getattr(router, "norm_topk_prob", False):
        w = w / w.sum(-1, keepdim=True)
    return w.to(logits.dtype)


class RouteRecorder:
    """While entered, keeps each router call's chosen experts; ``take()`` returns the calls
    since the last ``take()`` as one (N, layers, k) tensor (the calls of one forward)."""

    def __init__(self, model: nn.Module):
        self.routers = moe_routers(model)
        self.calls: list[list[Tensor]] = [[] for _ in self.routers]
        self.handles: list = []

    def __enter__(self) -> "RouteRecorder":
        for i, r in enumerate(self.routers):
            self.handles.append(r.register_forward_hook(
                lambda mod, args, out, i=i: self.calls[i].append(out[2].detach())))
        return self

    def __exit__(self, *exc) -> None:
        for h in self.handles:
            h.remove()
        self.handles.clear()

    def take(self) -> Tensor | None:
        """(N, layers, k) int16 experts of the forward since the last call; None if none ran."""
        if not self.calls or not all(self.calls):
            for c in self.calls:
                c.clear()
            return None
        out = torch.stack([c[-1] for c in self.calls], dim=1).to(torch.int16)
        for c in self.calls:
            c.clear()
        return out


@contextlib.contextmanager
def replay(model: nn.Module, plans: Sequence[Tensor | None]) -> Iterator[None]:
    """Forward ``c`` of the model inside this context routes token n of MoE layer l to
    ``plans[c][n, l]`` (k experts) where that is >= 0, with the gate weights recomputed by
    ``gate_weights`` from the model's own logits (differentiable); a None plan, a -1 row and
    forwards past ``len(plans)`` keep the router's own choice."""
    routers = moe_routers(model)
    count = [0] * len(routers)

    def hook(i: int):
        def fn(mod: nn.Module, args, out):
            c = count[i]
            count[i] += 1
            plan = plans[c] if c < len(plans) else None
            if plan is None:
                return out
            logits, _, own = out
            want = plan[:, i].to(device=own.device, dtype=own.dtype)
            if want.shape != own.shape:
                raise ValueError(f"routing replay: layer {i} routed {tuple(own.shape)} tokens x "
                                 f"experts, the recorded routes are {tuple(want.shape)}")
            idx = torch.where(want >= 0, want, own)
            return logits, gate_weights(mod, logits, idx), idx
        return fn

    handles = [r.register_forward_hook(hook(i)) for i, r in enumerate(routers)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def response_routes(routes: Sequence[Tensor | None], width: int, layers: int,
                    top_k: int) -> Tensor:
    """Per-sequence (len_i, layers, k) routes -> (B, width, layers, k), right-padded with -1
    (a sequence without routes: all -1)."""
    out = torch.full((len(routes), width, layers, top_k), -1, dtype=torch.int16)
    for b, r in enumerate(routes):
        if r is not None:
            out[b, :r.shape[0]] = r
    return out


def replay_plans(batch, share: bool) -> list[Tensor | None]:
    """The per-forward plans of ``replay`` for a padded ``SeqBatch`` carrying ``routes``
    (B, R, layers, k) of its response tokens: with shared prompts (``response_logits``' two
    forwards) the prompt forward routes freely and the response forward replays; else one
    forward over (B, P + R) with the prompt positions free. No routes: no plan."""
    routes = getattr(batch, "routes", None)
    if routes is None:
        return []
    if batch.shared and share:
        return [None, routes.flatten(0, 1)]
    free = torch.full((routes.shape[0], batch.prompt_width, *routes.shape[2:]), -1,
                      dtype=routes.dtype)
    return [torch.cat([free, routes], dim=1).flatten(0, 1)]
