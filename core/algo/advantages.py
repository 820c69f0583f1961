"""Group-relative advantages (GRPO and Dr. GRPO).

A group is the samples drawn for one prompt; ``groups[i]`` names sample i's group (the
rollout's ``prompt_index``), so samples may arrive in any order and groups may differ in size.
Each sample is scored against its own group only.
"""

from __future__ import annotations

import torch
from torch import Tensor


def group_advantages(rewards: Tensor, groups: Tensor, eps: float = 1e-6, scale: bool = True,
                     std_unbiased: bool = True) -> Tensor:
    """(n,) rewards and (n,) integer group ids -> (n,) float32 advantages.

    a_i = (r_i - mean_g) / (std_g + eps)   with the unbiased std (GRPO, Shao et al. 2024,
    "DeepSeekMath", arXiv:2402.03300); with ``scale=False`` only the mean is removed,
    a_i = r_i - mean_g (Dr. GRPO, Liu et al. 2025, "Understanding R1-Zero-Like Training",
    arXiv:2503.20783). A group whose rewards are all equal, including a group of one, gets
    exact zeros (no 0/eps noise from rounding in the mean).
    """
    if rewards.dim() != 1 or groups.shape != rewards.shape:
        raise ValueError(f"group_advantages: rewards and groups must both be 1-D (n,), got "
                         f"{tuple(rewards.shape)} and {tuple(groups.shape)}")
    r = rewards.float()
    _, inv, counts = torch.unique(groups, return_inverse=True, return_counts=True)
    k = counts.numel()
    mean = torch.zeros(k).index_add_(0, inv, r) / counts
    centred = r - mean[inv]
    if scale:
        dof = (counts - 1 if std_unbiased else counts).clamp(min=1)
        std = (torch.zeros(k).index_add_(0, inv, centred.square()) / dof).sqrt()
        centred = centred / (std[inv] + eps)
    hi = torch.full((k,), -torch.inf).scatter_reduce(0, inv, r, "amax")
    lo = torch.full((k,), torch.inf).scatter_reduce(0, inv, r, "amin")
    constant = (hi == lo)[inv]
    return torch.where(constant, torch.zeros_like(centred), centred)
