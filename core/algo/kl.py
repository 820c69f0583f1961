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


class FixedKLController:
    """beta stays the recipe's ``algorithm.kl_coef``."""

    def __init__(self, coef: float):
        self.value = float(coef)

    def update(self, kl: float, n_steps: int) -> None:
        """Nothing changes."""


class AdaptiveKLController:
    """Adaptive KL coefficient of Ziegler et al. 2019, "Fine-Tuning Language Models from Human
    Preferences" (arXiv:1909.08593), as verl's ``kl_ctrl.type: adaptive``:

        e_t = clip(KL_t / KL_target - 1, -0.2, 0.2)
        beta_{t+1} = beta_t · (1 + e_t · n_t / horizon)

    KL_t is the step's measured KL, n_t the samples the step trained on. Above the target
    beta grows, below it shrinks, by at most 20% of n_t / horizon per step.
    """

    def __init__(self, coef: float, target: float, horizon: int):
        if target <= 0 or horizon <= 0:
            raise ValueError(f"adaptive KL needs target > 0 and horizon > 0, got target "
                             f"{target}, horizon {horizon}")
        self.value, self.target, self.horizon = float(coef), float(target), int(horizon)

    def update(self, kl: float, n_steps: int) -> None:
        error = min(max(kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_steps / self.horizon
