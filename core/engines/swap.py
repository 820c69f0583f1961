"""``actor.swap_optimizer``: the optimizer state lives in host memory and comes to the device
for the step one part at a time (MindSpeed's swap optimizer; ``config.memory.SWAP_CHUNKS``
parts of about equal size, so the die holds 1/SWAP_CHUNKS of the Adam state at the peak).

``install(optimizer, device)`` wraps a torch optimizer's ``step``: for each part, its
parameters' state tensors move to ``device``, the optimizer steps those parameters only (its
param groups narrowed to the part), and the state moves back to the host. Adam's update is
elementwise, so stepping in parts gives the same numbers as one step (bit-identical on CPU,
where host and device are the same memory and nothing moves). State created by the first
step is created on the device and moved to the host after it.
"""

from __future__ import annotations

import types
from typing import Any

import torch

from r1zero.config.memory import SWAP_CHUNKS


def parts(params: list[torch.Tensor], n: int = SWAP_CHUNKS) -> list[list[torch.Tensor]]:
    """``params`` in order, cut into at most ``n`` consecutive parts of about equal numel.
    E.g. numels [4, 4, 4, 4] into 2 parts -> [[p0, p1], [p2, p3]]."""
    total = sum(p.numel() for p in params)
    target = max(1, -(-total // n))
    out: list[list[torch.Tensor]] = [[]]
    size = 0
    for p in params:
        if out[-1] and size + p.numel() > target and len(out) < n:
            out.append([])
            size = 0
        out[-1].append(p)
        size += p.numel()
    return [c for c in out if c]


def _move(optimizer: torch.optim.Optimizer, part: list[torch.Tensor], device: Any) -> None:
    for p in part:
        state = optimizer.state.get(p)
        for k, v in (state or {}).items():
            if torch.is_tensor(v) and v.dim():
                state[k] = v.to(device, non_blocking=True)


def install(optimizer: torch.optim.Optimizer, device: torch.device,
            host: torch.device = torch.device("cpu")) -> None:
    """Make ``optimizer.step`` a part-by-part step with the state kept on ``host``."""
    step = optimizer.step

    def swapped_step(self: torch.optim.Optimizer, closure: Any = None) -> None:
        groups = [g["params"] for g in optimizer.param_groups]
        live = [p for ps in groups for p in ps if p.grad is not None]
        try:
            for part in parts(live):
                ids = {id(p) for p in part}
                _move(optimizer, part, device)
                for g, ps in zip(optimizer.param_groups, groups):
                    g["params"] = [p for p in ps if id(p) in ids]
                step()
                _move(optimizer, part, host)
        finally:
            for g, ps in zip(optimizer.param_groups, groups):
                g["params"] = ps
        if device.type == "cuda":
            torch.cuda.synchronize()

    optimizer.step = types.MethodType(swapped_step, optimizer)   # bound: lr schedulers wrap it
    optimizer.swaps_state = True
