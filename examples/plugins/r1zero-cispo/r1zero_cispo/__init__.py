"""r1zero algorithm plugin ``cispo``: a policy loss and the algorithm that uses it.

Contract (docs/plugins.md, ``register_algorithms(register)``): a policy loss is
``fn(logp, logp_old, advantages, mask, *, clip_ratio, clip_ratio_high, dual_clip)`` ->
``(per-token loss (n, T), clipfrac, approx_kl)``; r1zero adds the KL and entropy terms and
aggregates by ``algorithm.loss_agg``.
"""

from __future__ import annotations

import torch

from r1zero.algo.algorithm import AlgorithmSpec, PolicyLoss
from r1zero.algo.loss import masked_mean
from r1zero.hookspecs import hookimpl


def cispo_loss(logp, logp_old, advantages, mask, *, clip_ratio=1.0, clip_ratio_high=None,
               dual_clip=None):
    """CISPO (MiniMax 2025, arXiv:2506.13585):
    l_t = -sg[clamp(r_t, 1 - clip_ratio, 1 + clip_ratio_high)] · A · logp_t.
    Its gradient is -w_t · A · ∇logp_t with the clipped weight w_t for every token, where
    PPO's clip would give 0. clipfrac: share of tokens whose weight was clipped."""
    if dual_clip is not None:
        raise ValueError("cispo: dual_clip is not defined for CISPO")
    if advantages.dim() == logp.dim() - 1:
        advantages = advantages.unsqueeze(-1)
    high = clip_ratio if clip_ratio_high is None else clip_ratio_high
    log_ratio = torch.clamp(logp - logp_old, min=-20.0, max=20.0)
    ratio = torch.exp(log_ratio).detach()
    weight = torch.clamp(ratio, 1.0 - clip_ratio, 1.0 + high)
    loss = -weight * advantages * logp
    clipfrac = masked_mean((weight != ratio).float(), mask)
    return loss, clipfrac.detach(), masked_mean(-log_ratio, mask).detach()


@hookimpl
def register_algorithms(register):
    register(PolicyLoss("cispo", cispo_loss))
    register(AlgorithmSpec("cispo", advantage="group_norm", policy_loss="cispo",
                           defaults={"loss_agg": "token-mean", "clip_ratio": 1.0}))
