"""Test-only redirections that let megatron-core 0.16.1 run on CPU ranks (gloo).

megatron-core assumes CUDA in a handful of places; ``apply()`` points each at the CPU. It is
imported by this directory's ``conftest.py`` and by the worker processes the tests spawn —
never by r1zero itself, whose megatron engine refuses a machine where these calls fail.

    1. the CUDA RNG tracker's state get/set and ``torch.cuda.manual_seed`` -> the CPU generator
    2. ``torch.cuda.current_device()`` -> the CPU device
    3. ``device="cuda"`` literals in the pipeline schedules, the optimizer, the grad
       buffers and the l2-norm helper -> CPU
    4. ``torch.cuda.synchronize`` in p2p communication -> no-op
    5. CUDA streams/events in the alltoall token dispatcher -> inert stand-ins
    6. ``all_to_all_single`` split sizes given as tensors -> lists
    7. ``param.type() == 'torch.cuda.FloatTensor'`` asserts -> CPU tensors report a cuda type
    8. ``tensor.cuda()`` (tied embeddings across pipeline stages) -> the tensor itself
    (``moe_utils.te_general_gemm``, missing without TransformerEngine on any hardware, is set
    by the engine itself: ``r1zero.engines.megatron.deepseek.without_transformer_engine``.)
"""

from __future__ import annotations

import types

import torch

_done = False


def _on_cpu(factory):
    def make(*args, device=None, **kwargs):
        return factory(*args, device="cpu" if device == "cuda" else device, **kwargs)
    return make


class _CpuTorch(types.ModuleType):
    """``torch`` as a megatron module sees it, with ``device="cuda"`` read as CPU."""

    def __init__(self):
        super().__init__("torch")
        for name in ("zeros", "ones", "empty", "full", "tensor", "arange"):
            setattr(self, name, _on_cpu(getattr(torch, name)))

    def __getattr__(self, name):
        return getattr(torch, name)


class _Inert:
    def __init__(self, *a, **k): ...
    def __enter__(self): return self
    def __exit__(self, *a): return False
    def __getattr__(self, name):   # an event recorded on a stream is inert too
        return lambda *a, **k: _Inert() if name == "record_event" else None


def _cuda_typed(original):
    def type_(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        if not args and not kwargs and isinstance(out, str) and out.startswith("torch.") \
                and not out.startswith("torch.cuda."):
            return "torch.cuda." + out[len("torch."):]
        return out
    return type_


def apply() -> None:
    global _done
    if _done:
        return
    _done = True
    import torch.distributed as dist
    from megatron.core import utils as mutils
    from megatron.core.distributed import param_and_grad_buffer
    from megatron.core.optimizer import clip_grads, grad_scaler, optimizer
    from megatron.core.pipeline_parallel import p2p_communication, schedules
    from megatron.core.tensor_parallel import random as mrandom
    from megatron.core.transformer.moe import token_dispatcher

    torch.cuda.get_rng_state = lambda device="cuda": torch.get_rng_state()          # 1
    torch.cuda.set_rng_state = lambda state, device="cuda": torch.set_rng_state(state)
    torch.cuda.manual_seed = torch.manual_seed
    mrandom._get_cuda_rng_state = lambda *a, **k: torch.get_rng_state()
    mrandom._set_cuda_rng_state = lambda state, *a, **k: torch.set_rng_state(state)
    torch.cuda.current_device = lambda: torch.device("cpu")                           # 2
    for module in (schedules, optimizer, clip_grads, grad_scaler, param_and_grad_buffer,  # 3
                   mutils):
        module.torch = _CpuTorch()
    torch.cuda.synchronize = lambda *a, **k: None                                      # 4
    p2p_communication.torch.cuda.synchronize = torch.cuda.synchronize
    torch.cuda.Stream = _Inert                                                         # 5
    torch.cuda.Event = _Inert
    torch.cuda.current_stream = lambda *a, **k: _Inert()
    torch.cuda.stream = lambda *a, **k: _Inert()
    token_dispatcher.torch.cuda.Stream = _Inert
    original_a2a = dist.all_to_all_single                                              # 6

    def all_to_all_single(output, input, output_split_sizes=None, input_split_sizes=None, **kw):
        as_list = lambda s: s.tolist() if isinstance(s, torch.Tensor) else s   # noqa: E731
        return original_a2a(output, input, as_list(output_split_sizes),
                            as_list(input_split_sizes), **kw)
    dist.all_to_all_single = all_to_all_single
    torch.Tensor.type = _cuda_typed(torch.Tensor.type)                                 # 7
    torch.Tensor.cuda = lambda self, *a, **k: self                                     # 8


def apply_in_worker() -> None:
    """Ray's ``worker_process_setup_hook``: the redirections, and one torch thread per rank."""
    torch.set_num_threads(1)
    apply()
