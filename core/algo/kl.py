"""Per-token estimators of KL(pi || pi_ref) from the log-probs of sampled tokens.

Names follow verl / MindSpeed-RL ``kl_penalty`` (see John Schulman, "Approximating KL
Divergence", 2020, for k1/k2/k3). Δ below is logp - logp_ref.
"""

from __future__ import annotations

import torch
from torch import Tensor

KL_KINDS = ("k1", "kl", "abs", "k2", "mse", "k3", "low_var_kl")


def kl_penalty(logp: Tensor, logp_ref: Tensor, kind: str = "k3") -> Tensor:
    """(..., T) log-probs under the policy and the reference -> (..., T) KL estimate per token.

    k1 / "kl":          Δ                                  (unbiased, high variance, can be < 0)
    "abs":              |Δ|
    k2 / "mse":         ½ Δ²
    k3 / "low_var_kl":  exp(-Δ) + Δ - 1, i.e. with d = logp_ref - logp clamped to [-20, 20],
                        exp(d) - d - 1 clamped to [-10, 10]   (unbiased, >= 0, low variance)
    The k3 clamps follow MindSpeed-RL / verl: they keep exp() finite on outlier tokens.
    """
    if kind in ("k1", "kl"):
        return logp - logp_ref
    if kind == "abs":
        return (logp - logp_ref).abs()
    if kind in ("k2", "mse"):
        return 0.5 * (logp - logp_ref).square()
    if kind in ("k3", "low_var_kl"):
        d = torch.clamp(logp_ref - logp, min=-20.0, max=20.0)
        return torch.clamp(torch.exp(d) - d - 1.0, min=-10.0, max=10.0)
    raise ValueError(f"kl_penalty: unknown kind {kind!r}; available: {', '.join(KL_KINDS)}")
