"""GRPO's policy loss: clipped importance ratio, KL penalty and entropy, over masked tokens.

Shapes: n sequences, T response tokens (right-padded), V vocabulary. ``response_mask`` is 1 on
real response tokens and 0 on padding; every reduction here ignores the padding.
"""

from __future__ import annotations

import torch
from torch import Tensor

from r1zero.algo.kl import kl_penalty

LOSS_AGGS = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum")


def masked_mean(x: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """Mean of x over the entries where mask is 1 (along ``dim``, or over everything).

    sum(x * mask) / sum(mask); an all-zero mask gives 0, not NaN.
    """
    mask = mask.to(x.dtype)
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1e-8)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1e-8)


def aggregate_loss(loss_mat: Tensor, response_mask: Tensor, agg: str = "token-mean") -> Tensor:
    """(n, T) per-token loss -> scalar.

    token-mean:          sum_{i,t} m_it l_it / sum_{i,t} m_it        (MindSpeed-RL, DAPO)
    seq-mean-token-mean: 1/n sum_i [sum_t m_it l_it / sum_t m_it]    (original GRPO)
    seq-mean-token-sum:  1/n sum_i sum_t m_it l_it                   (Dr. GRPO)
    """
    if agg == "token-mean":
        return masked_mean(loss_mat, response_mask)
    mask = response_mask.to(loss_mat.dtype)
    if agg == "seq-mean-token-mean":
        return masked_mean(loss_mat, mask, dim=-1).mean()
    if agg == "seq-mean-token-sum":
        return (loss_mat * mask).sum(-1).mean()
    raise ValueError(f"aggregate_loss: unknown agg {agg!r}; available: {', '.join(LOSS_AGGS)}")


def clipped_policy_loss(logp: Tensor, logp_old: Tensor, advantages: Tensor, response_mask: Tensor,
                        clip_ratio: float = 0.2, clip_ratio_high: float | None = None,
                        dual_clip: float | None = None,
                        agg: str = "token-mean") -> tuple[Tensor, Tensor, Tensor]:
    """PPO clipped surrogate. logp, logp_old, response_mask: (n, T); advantages (n, T) or (n,).

    ratio = exp(logp - logp_old)   (log-ratio clamped to ±20 so exp stays finite)
    l = max(-A·ratio, -A·clamp(ratio, 1 - clip_ratio, 1 + clip_ratio_high))
    dual clip (c > 1, Ye et al. 2020): where A < 0, l = min(l, -A·c).
    Returns (loss aggregated by ``agg``, clipfrac = share of tokens where the clip is active,
    approx_kl = masked mean of logp_old - logp); the last two are detached.
    """
    if advantages.dim() == logp.dim() - 1:
        advantages = advantages.unsqueeze(-1)
    high = clip_ratio if clip_ratio_high is None else clip_ratio_high
    log_ratio = torch.clamp(logp - logp_old, min=-20.0, max=20.0)
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_ratio, 1.0 + high)
    loss_mat = torch.maximum(unclipped, clipped)
    clipfrac = masked_mean((clipped > unclipped).float(), response_mask)
    if dual_clip is not None:
        if dual_clip <= 1.0:
            raise ValueError(f"clipped_policy_loss: dual_clip must be > 1, got {dual_clip}")
        loss_mat = torch.where(advantages < 0, torch.minimum(loss_mat, -advantages * dual_clip),
                               loss_mat)
    approx_kl = masked_mean(-log_ratio, response_mask)
    return aggregate_loss(loss_mat, response_mask, agg), clipfrac.detach(), approx_kl.detach()


def entropy_from_logits(logits: Tensor) -> Tensor:
    """(..., T, V) logits -> (..., T) entropy of softmax(logits) in nats.

    H = logsumexp(z) - sum_v softmax(z)_v z_v = -sum_v p_v log p_v ; tokens with p = 0
    (z = -inf, e.g. masked vocabulary) contribute 0.
    """
    logp = torch.log_softmax(logits, dim=-1)
    p = logp.exp()
    return -torch.where(p > 0, p * logp, torch.zeros_like(p)).sum(-1)


def grpo_loss(logp: Tensor, logp_old: Tensor, advantages: Tensor, response_mask: Tensor,
              logp_ref: Tensor | None = None, entropy: Tensor | None = None, *,
              kl_coef: float = 0.001, kl_kind: str = "k3", entropy_coeff: float = 0.0,
              clip_ratio: float = 0.2, clip_ratio_high: float | None = None,
              dual_clip: float | None = None, agg: str = "token-mean") -> dict[str, Tensor]:
    """GRPO objective on one (micro-)batch; all (n, T) tensors, advantages (n, T) or (n,).

    loss = pg + kl_coef · agg(kl_penalty(logp, logp_ref, kl_kind)) - entropy_coeff · agg(entropy)
    (KL in the loss, not the reward, as MindSpeed-RL and verl do). Without ``logp_ref`` the KL
    term is 0; without ``entropy`` (per-token, e.g. from ``entropy_from_logits``) it is 0.
    Returns 0-dim tensors: "loss" (carries the graph), and detached "pg_loss", "kl",
    "entropy", "clipfrac", "approx_kl".
    """
    pg, clipfrac, approx_kl = clipped_policy_loss(
        logp, logp_old, advantages, response_mask, clip_ratio=clip_ratio,
        clip_ratio_high=clip_ratio_high, dual_clip=dual_clip, agg=agg)
    zero = torch.zeros((), dtype=pg.dtype, device=pg.device)
    kl = zero if logp_ref is None else aggregate_loss(
        kl_penalty(logp, logp_ref, kl_kind), response_mask, agg)
    ent = zero if entropy is None else aggregate_loss(entropy, response_mask, agg)
    loss = pg + kl_coef * kl - entropy_coeff * ent
    return {"loss": loss, "pg_loss": pg.detach(), "kl": kl.detach(), "entropy": ent.detach(),
            "clipfrac": clipfrac, "approx_kl": approx_kl}
