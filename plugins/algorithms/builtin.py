"""Built-in RL algorithms: GRPO, Dr. GRPO, DAPO and GSPO, with their pieces (advantage
estimators, policy losses, KL controllers). Registered exactly as a plugin registers its own.

| algorithm | advantage    | policy loss | loss_agg                | other defaults             |
|-----------|--------------|-------------|-------------------------|----------------------------|
| grpo      | group_norm   | ppo_clip    | token-mean              | clip 0.2                   |
| dr_grpo   | group_mean   | ppo_clip    | seq-mean-token-sum-norm | clip 0.2                   |
| dapo      | group_norm   | ppo_clip    | token-mean              | clip 0.2 / 0.28, dynamic   |
|           |              |             |                         | sampling, overlong mask    |
| gspo      | group_norm   | gspo        | seq-mean-token-mean     | clip 3e-4 / 4e-4           |

Rollout corrections (``algorithm.rollout_correction``, off by default; C =
``algorithm.rollout_correction_c``): ``tis_token``, ``tis_seq`` (truncated importance
sampling), ``mis_token``, ``mis_seq`` (masked importance sampling) -- see
``r1zero.algo.rollout_corr``.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from r1zero.algo.advantages import group_advantages
from r1zero.algo.algorithm import (AdvantageEstimator, AlgorithmSpec, KLController, PolicyLoss,
                                   RolloutCorrection)
from r1zero.algo.kl import AdaptiveKLController, FixedKLController
from r1zero.algo.loss import gspo_loss, ppo_clip_loss
from r1zero.algo.rollout_corr import mis_seq, mis_token, tis_seq, tis_token
from r1zero.host.hookspecs import hookimpl


def group_norm(rewards: Tensor, groups: Tensor, a: Any) -> Tensor:
    """GRPO (Shao et al. 2024, "DeepSeekMath", arXiv:2402.03300):
    a_i = (r_i - mean_g) / (std_g + adv_eps), over the samples of the same prompt."""
    return group_advantages(rewards, groups, a.adv_eps, scale=True)


def group_mean(rewards: Tensor, groups: Tensor, a: Any) -> Tensor:
    """Dr. GRPO (Liu et al. 2025, "Understanding R1-Zero-Like Training: A Critical
    Perspective", arXiv:2503.20783): a_i = r_i - mean_g, no division by the group's std
    (which weights easy and hard prompts unevenly)."""
    return group_advantages(rewards, groups, a.adv_eps, scale=False)


def fixed_kl(a: Any) -> FixedKLController:
    """beta = ``algorithm.kl_coef`` for the whole run."""
    return FixedKLController(a.kl_coef)


def adaptive_kl(a: Any) -> AdaptiveKLController:
    """beta starts at ``kl_coef`` and tracks ``kl_target`` over ``kl_horizon`` samples
    (Ziegler et al. 2019, arXiv:1909.08593; see ``AdaptiveKLController``)."""
    return AdaptiveKLController(a.kl_coef, a.kl_target, a.kl_horizon)


ALGORITHMS = (
    AlgorithmSpec("grpo", "group_norm", "ppo_clip"),
    AlgorithmSpec("dr_grpo", "group_mean", "ppo_clip", {"loss_agg": "seq-mean-token-sum-norm"}),
    # DAPO (Yu et al. 2025, arXiv:2503.14476): clip-higher, token-level loss, dynamic
    # sampling, overlong filtering (pair with the ``overlong_penalty`` reward for soft shaping)
    AlgorithmSpec("dapo", "group_norm", "ppo_clip",
                  {"loss_agg": "token-mean", "clip_ratio": 0.2, "clip_ratio_high": 0.28,
                   "dynamic_sampling": True, "overlong_mask": True}),
    # GSPO (Zheng et al. 2025, arXiv:2507.18071): sequence-level ratio and clipping
    AlgorithmSpec("gspo", "group_norm", "gspo",
                  {"loss_agg": "seq-mean-token-mean", "clip_ratio": 3e-4, "clip_ratio_high": 4e-4}),
)
PIECES = (
    AdvantageEstimator("group_norm", group_norm),
    AdvantageEstimator("group_mean", group_mean),
    PolicyLoss("ppo_clip", ppo_clip_loss, supports_dual_clip=True),
    PolicyLoss("gspo", gspo_loss),
    KLController("fixed", fixed_kl),
    KLController("adaptive", adaptive_kl),
    RolloutCorrection("tis_token", tis_token),
    RolloutCorrection("tis_seq", tis_seq),
    RolloutCorrection("mis_token", mis_token),
    RolloutCorrection("mis_seq", mis_seq),
)


@hookimpl
def register_algorithms(register):
    for thing in ALGORITHMS + PIECES:
        register(thing)
