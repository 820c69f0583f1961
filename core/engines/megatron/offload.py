"""The megatron engine's train state off the device while the rollout generates
(``rollout.offload_train_params`` / ``rollout.offload_train_grads``)."""

from __future__ import annotations

import contextlib
from typing import Any

import torch


@contextlib.contextmanager
def rollout_phase(engine: Any):
    """While the rollout generates, ``rollout.offload_train_params`` / ``_grads`` free the
    actor's device storage (the DDP gradient buffers, emptied after each step anyway; the
    parameters, copied to the host and back). Tensors keep their views: only the storage
    under them is resized. On the cpu backend the state is in host memory already: nothing
    moves. (Accelerator path unverified here.)"""
    r = engine.cfg.rollout
    if engine.device.type == "cpu" or not (r.offload_train_params or r.offload_train_grads):
        yield
        return
    ddp = engine.ddp
    buffers = ddp.buffers + ddp.expert_parallel_buffers
    grads = [b.grad_data for b in buffers] if r.offload_train_grads else []
    params = []
    if r.offload_train_params:
        params = [b.param_data for b in buffers if b.param_data is not None] or \
            [p.data for p in engine.model.parameters()]
    saved = [(t, t.detach().to("cpu")) for t in params]
    sizes = [(t.untyped_storage(), t.untyped_storage().nbytes()) for t in grads + params]
    for storage, _ in sizes:
        storage.resize_(0)
    torch.cuda.empty_cache()
    try:
        yield
    finally:
        for storage, nbytes in sizes:
            storage.resize_(nbytes)
        for t in grads:
            t.zero_()
        for t, host in saved:
            t.copy_(host, non_blocking=True)
        torch.cuda.synchronize()
