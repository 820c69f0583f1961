"""Stop a run the first time its numbers stop being numbers.

A non-finite loss, gradient norm or weight never heals: every later step is NaN and the run
ends in some unrelated error far away (an IndexError in sampling, a crash in plotting). These
checks raise ``TrainingError`` naming the step and the first bad value instead.
"""

from __future__ import annotations

import math
from typing import Mapping

import torch

from r1zero.host.errors import TrainingError


def check_step(step: int, stats: Mapping[str, float]) -> None:
    """Before the optimizer step: the loss terms and the gradient norm must be finite."""
    bad = {k: v for k, v in stats.items() if isinstance(v, float) and not math.isfinite(v)}
    if bad:
        raise TrainingError(f"step {step}: non-finite {', '.join(f'{k}={v}' for k, v in bad.items())}"
                            "; stopped before the optimizer step (check actor.lr, the rewards and "
                            "the model's weights)")


def _local(t: torch.Tensor) -> torch.Tensor:
    return t.to_local() if hasattr(t, "to_local") else t


@torch.no_grad()
def check_weights(model: torch.nn.Module, when: str) -> None:
    """Every parameter finite, else a ``TrainingError`` naming the first one that is not."""
    params = [_local(p.detach()) for p in model.parameters()]   # a sharded rank: its shards
    if not params:
        return
    norms = torch._foreach_norm(params, float("inf"))   # max abs: one pass, no overflow
    if bool(torch.isfinite(torch.stack([n.float().to(norms[0].device) for n in norms])).all()):
        return
    for name, p in model.named_parameters():
        if not bool(torch.isfinite(_local(p)).all()):
            raise TrainingError(f"{when}: model weight {name!r} holds non-finite values "
                                f"(nan/inf); stopped")
    raise TrainingError(f"{when}: the model weights hold non-finite values; stopped")
