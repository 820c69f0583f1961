"""A recipe's ``algorithm:`` section resolved into the pieces the trainer calls.

The trainer knows only this interface: ``advantages(rewards, groups)`` once per step,
``loss(...)`` for every micro-batch (the one objective, ``r1zero.algo.loss.objective``), and
``kl_ctrl`` for the current KL coefficient.
"""

from __future__ import annotations

from typing import Any, Callable

import attrs
from torch import Tensor

from r1zero.algo.advantages import group_advantages
from r1zero.algo.kl import FixedKLController
from r1zero.algo.loss import objective, ppo_clip_loss


@attrs.define
class Algorithm:
    name: str
    advantage: Callable[[Tensor, Tensor], Tensor]      # (rewards, groups) -> advantages
    policy_loss: Callable[..., tuple[Tensor, Tensor, Tensor]]
    kl_ctrl: Any
    loss_agg: str = "token-mean"
    clip_ratio: float = 0.2
    clip_ratio_high: float | None = None
    dual_clip: float | None = None
    kl_kind: str = "k3"
    entropy_coeff: float = 0.0
    norm_len: int | None = None

    def advantages(self, rewards: Tensor, groups: Tensor) -> Tensor:
        return self.advantage(rewards, groups)

    def loss(self, logp: Tensor, logp_old: Tensor, advantages: Tensor, mask: Tensor,
             logp_ref: Tensor | None = None, entropy: Tensor | None = None) -> dict[str, Tensor]:
        """``objective`` on one micro-batch with this algorithm's settings."""
        return objective(logp, logp_old, advantages, mask, logp_ref, entropy,
                         policy_loss=self.policy_loss, kl_coef=self.kl_ctrl.value,
                         kl_kind=self.kl_kind, entropy_coeff=self.entropy_coeff,
                         clip_ratio=self.clip_ratio, clip_ratio_high=self.clip_ratio_high,
                         dual_clip=self.dual_clip, agg=self.loss_agg, norm_len=self.norm_len)


def resolve_algorithm(cfg: Any, host: Any) -> Algorithm:
    a = cfg.algorithm
    scale = a.adv_estimator == "group_norm"

    def advantage(rewards: Tensor, groups: Tensor) -> Tensor:
        return group_advantages(rewards, groups, a.adv_eps, scale=scale)

    return Algorithm("grpo", advantage, ppo_clip_loss, FixedKLController(a.kl_coef),
                     loss_agg=a.loss_agg, clip_ratio=a.clip_ratio,
                     clip_ratio_high=a.clip_ratio_high, dual_clip=a.dual_clip,
                     kl_kind=a.kl_penalty, entropy_coeff=a.entropy_coeff,
                     norm_len=cfg.rollout.max_response_length)
