"""GRPO's algorithm as pure functions of tensors: advantages, KL estimators, losses."""

from r1zero.algo.advantages import broadcast_advantages, group_advantages
from r1zero.algo.kl import KL_KINDS, kl_penalty
from r1zero.algo.loss import (LOSS_AGGS, aggregate_loss, clipped_policy_loss, entropy_from_logits,
                              grpo_loss, masked_mean)

__all__ = [
    "KL_KINDS", "LOSS_AGGS", "aggregate_loss", "broadcast_advantages", "clipped_policy_loss",
    "entropy_from_logits", "group_advantages", "grpo_loss", "kl_penalty", "masked_mean",
]
