"""Group-relative advantages of GRPO (MindSpeed-RL ``adv_estimator: group_norm``).

Rewards arrive laid out group after group: the ``group_size`` samples of prompt 0, then those
of prompt 1, and so on. Each sample is scored against its own group only.
"""

from __future__ import annotations

import torch
from torch import Tensor


def group_advantages(rewards: Tensor, group_size: int, eps: float = 1e-6, scale: bool = True,
                     std_unbiased: bool = True) -> Tensor:
    """(n,) rewards laid out group after group -> (n,) float32 advantages.

    a_i = (r_i - mean_g) / (std_g + eps)   with torch's unbiased std (MindSpeed-RL group_norm);
    with ``scale=False`` only the mean is removed, a_i = r_i - mean_g (Dr. GRPO; verl's
    ``norm_adv_by_std_in_grpo=False``). A group whose rewards are all equal, including a group
    of one, gets exact zeros (no 0/eps noise from rounding in the mean).
    """
    if rewards.dim() != 1:
        raise ValueError(f"group_advantages: rewards must be 1-D (n,), "
                         f"got shape {tuple(rewards.shape)}")
    n = rewards.numel()
    if group_size < 1 or n % group_size:
        raise ValueError(f"group_advantages: {n} rewards do not split into groups of {group_size}")
    r = rewards.float().reshape(-1, group_size)
    centred = r - r.mean(dim=1, keepdim=True)
    if scale and group_size > 1:
        std = r.std(dim=1, keepdim=True, unbiased=std_unbiased)
        centred = centred / (std + eps)
    constant = (r.amax(dim=1, keepdim=True) == r.amin(dim=1, keepdim=True))
    return torch.where(constant, torch.zeros_like(centred), centred).reshape(n)


def broadcast_advantages(advantages: Tensor, response_mask: Tensor) -> Tensor:
    """(n,) per-sample advantages, (n, T) response mask -> (n, T) per-token advantages.

    A[i, t] = a_i * mask[i, t]: every response token of a sample shares its advantage and
    padding gets 0.
    """
    if advantages.shape[0] != response_mask.shape[0]:
        raise ValueError(f"broadcast_advantages: {advantages.shape[0]} advantages for "
                         f"{response_mask.shape[0]} rows of response_mask")
    return advantages.unsqueeze(-1).to(response_mask.device) * response_mask.to(advantages.dtype)
