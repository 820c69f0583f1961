"""The RL algorithm as pure functions of tensors: advantages, KL estimators, losses."""

from r1zero.algo.advantages import group_advantages
from r1zero.algo.kl import KL_KINDS, kl_penalty
from r1zero.algo.loss import LOSS_AGGS, aggregate_loss, masked_mean, objective, ppo_clip_loss

__all__ = [
    "KL_KINDS", "LOSS_AGGS", "aggregate_loss", "group_advantages",
    "kl_penalty", "masked_mean", "objective", "ppo_clip_loss",
]
