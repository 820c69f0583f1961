"""Train/rollout mismatch: how far the rollout's log-probs are from the actor's, and the
corrections that reweight or drop tokens for it.

The rollout engine samples from pi_rollout (its own kernels, maybe another dtype); the PPO
ratio assumes pi_rollout = pi_old (the actor's log-probs of the same tokens before the
update). Shapes: n sequences, T response tokens (right-padded); ``mask`` (n, T) is 1 on real
response tokens. ``log_ratio`` = logp_old - logp_rollout throughout.

References: Yao et al. 2025, "Your Efficient RL Framework Secretly Brings You Off-Policy RL
Training" (https://fengyao.notion.site/off-policy-rl): truncated importance sampling (TIS);
verl's docs/algo/rollout_corr.md (Liu, Li et al. 2025, "When Speed Kills Stability"):
token/sequence-level IS weights and rejection (masked importance sampling, MIS).
"""

from __future__ import annotations

import torch
from torch import Tensor

# log-ratios are clamped here before exp, so a weight stays finite (exp(20) ~ 4.9e8)
LOG_BOUND = 20.0
# the ratio band outside which a token counts in ``rollout/ratio_outside``
RATIO_BAND = (0.5, 2.0)


def mismatch_sums(logp_old: Tensor, logp_rollout: Tensor, mask: Tensor) -> dict[str, float]:
    """(n, T) actor and rollout log-probs of the same tokens -> sums over the masked tokens,
    to be added over micro-batches and ranks, then turned into means by ``mismatch_metrics``.

    d = logp_old - logp_rollout, r = exp(d):
      tokens = sum m;  abs_sum = sum m·|d|;  abs_max = max over masked |d| (0 when none);
      k3_sum = sum m·(r - 1 - d)   (k3 estimate of KL(pi_rollout || pi_old), Schulman 2020;
                                    the samples come from pi_rollout);
      outside = sum m·[r < 0.5 or r > 2].
    """
    m = mask.to(torch.float64)
    d = (logp_old.detach().double() - logp_rollout.detach().double()).clamp(-LOG_BOUND, LOG_BOUND)
    r = torch.exp(d)
    on = m > 0
    lo, hi = RATIO_BAND
    return {"tokens": float(m.sum()), "abs_sum": float((m * d.abs()).sum()),
            "abs_max": float(d.abs()[on].max()) if bool(on.any()) else 0.0,
            "k3_sum": float((m * (r - 1 - d)).sum()),
            "outside": float((m * ((r < lo) | (r > hi))).sum())}


def add_sums(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    """Two ``mismatch_sums`` combined: sums added, ``abs_max`` the larger."""
    if not a:
        return dict(b)
    out = {k: a[k] + b[k] for k in a if k != "abs_max"}
    out["abs_max"] = max(a["abs_max"], b["abs_max"])
    return out


def mismatch_metrics(sums: dict[str, float]) -> dict[str, float]:
    """``mismatch_sums`` (added over the step) -> the step's ``rollout/*`` metrics:
    logprob_diff_mean = abs_sum / tokens, logprob_diff_max = abs_max,
    mismatch_kl = k3_sum / tokens, ratio_outside = outside / tokens."""
    n = max(sums.get("tokens", 0.0), 1.0)
    return {"rollout/logprob_diff_mean": sums["abs_sum"] / n,
            "rollout/logprob_diff_max": sums["abs_max"],
            "rollout/mismatch_kl": sums["k3_sum"] / n,
            "rollout/ratio_outside": sums["outside"] / n}


def _token_log_ratio(logp_old: Tensor, logp_rollout: Tensor) -> Tensor:
    return (logp_old - logp_rollout).detach().clamp(-LOG_BOUND, LOG_BOUND)


def _seq_log_ratio(logp_old: Tensor, logp_rollout: Tensor, mask: Tensor) -> Tensor:
    """(n, T) -> (n, 1): sum_t m_it (logp_old - logp_rollout)_it, clamped to ±LOG_BOUND."""
    d = (logp_old - logp_rollout).detach() * mask
    return d.sum(-1, keepdim=True).clamp(-LOG_BOUND, LOG_BOUND)


def tis_token(logp_old: Tensor, logp_rollout: Tensor, mask: Tensor, c: float = 2.0) -> Tensor:
    """Token-level truncated importance sampling (Yao et al. 2025; verl rollout_corr
    ``rollout_is: token``). (n, T) -> (n, T) detached weights on the policy term:

        w_it = min(pi_old / pi_rollout, C) · m_it = min(exp(logp_old - logp_rollout), C) · m_it
    """
    return torch.exp(_token_log_ratio(logp_old, logp_rollout)).clamp(max=c) * mask


def tis_seq(logp_old: Tensor, logp_rollout: Tensor, mask: Tensor, c: float = 2.0) -> Tensor:
    """Sequence-level truncated importance sampling (verl rollout_corr ``rollout_is:
    sequence``): one weight per sequence, the product of its token ratios, truncated:

        w_i = min(exp(sum_t m_it (logp_old - logp_rollout)_it), C);  (n, T) weights w_i · m_it
    """
    w = torch.exp(_seq_log_ratio(logp_old, logp_rollout, mask)).clamp(max=c)
    return w * mask


def mis_token(logp_old: Tensor, logp_rollout: Tensor, mask: Tensor, c: float = 2.0) -> Tensor:
    """Token-level masked importance sampling (verl rollout_corr rejection ``rollout_rs:
    token``): a token whose ratio pi_old / pi_rollout leaves [1/C, C] is dropped from the
    policy term. (n, T) -> (n, T) 0/1 weights: m_it · [1/C <= exp(d_it) <= C]."""
    r = torch.exp(_token_log_ratio(logp_old, logp_rollout))
    return ((r >= 1.0 / c) & (r <= c)).to(mask.dtype) * mask


def mis_seq(logp_old: Tensor, logp_rollout: Tensor, mask: Tensor, c: float = 2.0) -> Tensor:
    """Sequence-level masked importance sampling (verl rollout_corr ``rollout_rs:
    sequence``): a sequence whose ratio exp(sum_t m_it d_it) leaves [1/C, C] is dropped
    whole. (n, T) -> (n, T) 0/1 weights."""
    r = torch.exp(_seq_log_ratio(logp_old, logp_rollout, mask))
    return ((r >= 1.0 / c) & (r <= c)).to(mask.dtype) * mask
