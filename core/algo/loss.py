"""The policy objective: a per-token policy loss, KL penalty and entropy, aggregated once.

Shapes: n sequences, T response tokens (right-padded), V vocabulary. ``response_mask`` is 1 on
real response tokens and 0 on padding; every reduction here ignores the padding.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from r1zero.algo.kl import kl_penalty

LOSS_AGGS = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm")


def masked_mean(x: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """Mean of x over the entries where mask is 1 (along ``dim``, or over everything).

    sum(x * mask) / sum(mask); an all-zero mask gives 0, not NaN.
    """
    mask = mask.to(x.dtype)
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1e-8)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1e-8)


def aggregate_loss(loss_mat: Tensor, response_mask: Tensor, agg: str = "token-mean",
                   norm_len: int | None = None) -> Tensor:
    """(n, T) per-token loss -> scalar.

    token-mean:              sum_{i,t} m_it l_it / sum_{i,t} m_it   (DAPO, Yu et al. 2025)
    seq-mean-token-mean:     1/n sum_i [sum_t m_it l_it / sum_t m_it]  (GRPO, Shao et al. 2024)
    seq-mean-token-sum:      1/n sum_i sum_t m_it l_it
    seq-mean-token-sum-norm: 1/n sum_i sum_t m_it l_it / L, L = ``norm_len`` (a constant, the
                             longest allowed response: Dr. GRPO, Liu et al. 2025)
    """
    if agg == "token-mean":
        return masked_mean(loss_mat, response_mask)
    mask = response_mask.to(loss_mat.dtype)
    if agg == "seq-mean-token-mean":
        return masked_mean(loss_mat, mask, dim=-1).mean()
    if agg == "seq-mean-token-sum":
        return (loss_mat * mask).sum(-1).mean()
    if agg == "seq-mean-token-sum-norm":
        if not norm_len or norm_len < 1:
            raise ValueError(f"aggregate_loss: {agg} needs norm_len >= 1, got {norm_len!r}")
        return (loss_mat * mask).sum(-1).mean() / norm_len
    raise ValueError(f"aggregate_loss: unknown agg {agg!r}; available: {', '.join(LOSS_AGGS)}")


def ppo_clip_loss(logp: Tensor, logp_old: Tensor, advantages: Tensor, response_mask: Tensor, *,
                  clip_ratio: float = 0.2, clip_ratio_high: float | None = None,
                  dual_clip: float | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """PPO clipped surrogate per token (Schulman et al. 2017, arXiv:1707.06347).
    logp, logp_old, response_mask: (n, T); advantages (n, T) or (n,).

    ratio = exp(logp - logp_old)   (log-ratio clamped to ±20 so exp stays finite)
    l = max(-A·ratio, -A·clamp(ratio, 1 - clip_ratio, 1 + clip_ratio_high))
    ``clip_ratio_high`` > ``clip_ratio`` is DAPO's clip-higher (Yu et al. 2025,
    arXiv:2503.14476); dual clip (c > 1, Ye et al. 2020): where A < 0, l = min(l, -A·c).
    Returns ((n, T) loss, clipfrac = share of tokens where the clip is active, approx_kl =
    masked mean of logp_old - logp); the last two are detached.
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
            raise ValueError(f"ppo_clip_loss: dual_clip must be > 1, got {dual_clip}")
        loss_mat = torch.where(advantages < 0, torch.minimum(loss_mat, -advantages * dual_clip),
                               loss_mat)
    approx_kl = masked_mean(-log_ratio, response_mask)
    return loss_mat, clipfrac.detach(), approx_kl.detach()


def objective(logp: Tensor, logp_old: Tensor, advantages: Tensor, response_mask: Tensor,
              logp_ref: Tensor | None = None, entropy: Tensor | None = None, *,
              policy_loss: Callable[..., tuple[Tensor, Tensor, Tensor]] = ppo_clip_loss,
              kl_coef: float = 0.001, kl_kind: str = "k3", entropy_coeff: float = 0.0,
              clip_ratio: float = 0.2, clip_ratio_high: float | None = None,
              dual_clip: float | None = None, agg: str = "token-mean",
              norm_len: int | None = None, pg_weight: Tensor | None = None) -> dict[str, Tensor]:
    """The RL objective on one (micro-)batch; all (n, T) tensors, advantages (n, T) or (n,).

    per-token  l_it = pg_it + kl_coef · kl_penalty(logp, logp_ref, kl_kind)_it
                      - entropy_coeff · entropy_it
    loss = agg(l)   — one aggregation for all three terms (KL in the loss, not the reward).
    ``policy_loss`` gives pg_it (``ppo_clip_loss``, or a registered one such as GSPO's);
    ``pg_weight`` (n, T), detached, multiplies it: a rollout correction's weights
    (``r1zero.algo.rollout_corr``: TIS truncated ratios, MIS 0/1 masks).
    Without ``logp_ref`` the KL term is 0; without ``entropy`` it is 0. Returns 0-dim tensors:
    "loss" (carries the graph), and detached "pg_loss", "kl", "entropy" (each aggregated the
    same way, so loss = pg_loss + kl_coef·kl - entropy_coeff·entropy), "clipfrac", "approx_kl".
    """
    pg_mat, clipfrac, approx_kl = policy_loss(
        logp, logp_old, advantages, response_mask, clip_ratio=clip_ratio,
        clip_ratio_high=clip_ratio_high, dual_clip=dual_clip)
    if pg_weight is not None:
        pg_mat = pg_mat * pg_weight.detach()
    zero = torch.zeros_like(pg_mat)
    kl_mat = zero if logp_ref is None else kl_penalty(logp, logp_ref, kl_kind)
    ent_mat = zero if entropy is None else entropy
    per_token = pg_mat + kl_coef * kl_mat - entropy_coeff * ent_mat

    def agg_(x: Tensor) -> Tensor:
        return aggregate_loss(x, response_mask, agg, norm_len)

    return {"loss": agg_(per_token), "pg_loss": agg_(pg_mat.detach()), "kl": agg_(kl_mat.detach()),
            "entropy": agg_(ent_mat.detach()), "clipfrac": clipfrac, "approx_kl": approx_kl}


def gspo_loss(logp: Tensor, logp_old: Tensor, advantages: Tensor, response_mask: Tensor, *,
              clip_ratio: float = 3e-4, clip_ratio_high: float | None = 4e-4,
              dual_clip: float | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """GSPO's clipped surrogate with a sequence-level ratio (Zheng et al. 2025, "Group
    Sequence Policy Optimization", arXiv:2507.18071), per token in its GSPO-token form:

        s_i = exp(1/|y_i| · sum_t (logp_it - logp_old_it))     (length-normalised)
        s_it = sg[s_i] · exp(logp_it - sg[logp_it])             (value s_i, grad of logp_it)
        l_it = max(-A_i·s_it, -A_i·clamp(s_it, 1 - clip_ratio, 1 + clip_ratio_high))

    Averaged over each sequence's tokens (``seq-mean-token-mean``) the gradient is GSPO's:
    s_i · A_i · ∇ 1/|y_i| sum_t logp_it, unless the sequence is clipped. The paper's ranges
    are small (3e-4, 4e-4) because s_i is a per-token geometric mean. No dual clip.
    Returns ((n, T) loss, clipfrac over tokens, approx_kl), as ``ppo_clip_loss``.
    """
    if dual_clip is not None:
        raise ValueError("gspo_loss: dual_clip is not defined for GSPO")
    if advantages.dim() == logp.dim() - 1:
        advantages = advantages.unsqueeze(-1)
    high = clip_ratio if clip_ratio_high is None else clip_ratio_high
    log_ratio = logp - logp_old
    seq_log_ratio = masked_mean(log_ratio, response_mask, dim=-1).detach().unsqueeze(-1)
    log_s = torch.clamp(logp - logp.detach() + seq_log_ratio, max=10.0)
    s = torch.exp(log_s)
    unclipped = -advantages * s
    clipped = -advantages * torch.clamp(s, 1.0 - clip_ratio, 1.0 + high)
    loss_mat = torch.maximum(unclipped, clipped)
    clipfrac = masked_mean((clipped > unclipped).float(), response_mask)
    approx_kl = masked_mean(-log_ratio, response_mask)
    return loss_mat, clipfrac.detach(), approx_kl.detach()
