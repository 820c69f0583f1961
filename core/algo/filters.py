"""Sample-level pieces of DAPO (Yu et al. 2025, "DAPO: An Open-Source LLM Reinforcement
Learning System at Scale", arXiv:2503.14476): dynamic sampling and overlong shaping."""

from __future__ import annotations

from typing import Sequence


def varied_groups(rewards: Sequence[float], groups: Sequence[int]) -> set[int]:
    """The group ids whose rewards are not all equal (dynamic sampling keeps only these: a
    group of equal rewards has zero advantage everywhere and no gradient)."""
    lo: dict[int, float] = {}
    hi: dict[int, float] = {}
    for r, g in zip(rewards, groups):
        lo[g] = min(lo.get(g, r), r)
        hi[g] = max(hi.get(g, r), r)
    return {g for g in lo if hi[g] != lo[g]}


def overlong_penalty(n_tokens: int, max_length: int, buffer: int) -> float:
    """DAPO's soft overlong punishment of a response of ``n_tokens`` tokens:

        0                                  if n <= L_max - L_cache
        ((L_max - L_cache) - n) / L_cache  if L_max - L_cache < n <= L_max
        -1                                 if n > L_max

    with L_max = ``max_length`` and L_cache = ``buffer`` (0 < buffer <= max_length).
    """
    if not 0 < buffer <= max_length:
        raise ValueError(f"overlong_penalty: need 0 < buffer <= max_length, got buffer "
                         f"{buffer}, max_length {max_length}")
    start = max_length - buffer
    if n_tokens <= start:
        return 0.0
    if n_tokens <= max_length:
        return (start - n_tokens) / buffer
    return -1.0
