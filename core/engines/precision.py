"""Mixed precision shared by every train engine: fp32 master weights, compute in ``model.dtype``.

Parameters, gradients and optimizer state stay float32; forwards run in the compute dtype
(``torch.autocast`` on one device, FSDP2's ``MixedPrecisionPolicy`` when sharded). Stepping
AdamW on bf16 weights directly loses most updates: at lr 1e-6 an update is below half an ulp of
a bf16 weight of magnitude >~ 2e-4, so it rounds away.

float16 compute gets dynamic loss scaling (``LossScaler``): the loss is multiplied by a scale
S before backward, gradients are divided by S before clipping; a step whose gradient norm is
not finite is skipped and S halves, and S doubles after ``growth_interval`` finite steps.
"""

from __future__ import annotations

import contextlib
import logging
import math
from typing import TYPE_CHECKING, Any, Iterable

import torch

from r1zero.host.errors import ConfigError

if TYPE_CHECKING:
    from r1zero.config.recipe import RecipeConfig

log = logging.getLogger("r1zero.engines.precision")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def compute_dtype(cfg: RecipeConfig) -> torch.dtype:
    return DTYPES[cfg.model.dtype]


def rollout_dtype(cfg: RecipeConfig) -> torch.dtype:
    """The rollout's dtype: ``rollout.dtype``, else ``model.dtype``."""
    return DTYPES[cfg.rollout.dtype or cfg.model.dtype]


def autocast(device: torch.device, dtype: torch.dtype):
    """A context that runs matmuls in ``dtype`` (nothing to do for float32)."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


class LossScaler:
    """Dynamic loss scale for float16 compute; inert (scale 1, never skips) otherwise."""
    def __init__(self, enabled: bool, initial: float | None = None, growth_interval: int = 1000,
                 factor: float = 2.0, min_scale: float = 1.0):
        self.enabled = enabled
        self.scale = float(initial or 2.0 ** 16) if enabled else 1.0
        self.growth_interval, self.factor, self.min_scale = growth_interval, factor, min_scale
        self.good_steps = 0
        self.skipped = 0

    def scale_loss(self, loss: torch.Tensor) -> torch.Tensor:
        return loss * self.scale if self.enabled else loss

    def unscale_(self, grads: Iterable[torch.Tensor]) -> None:
        if self.enabled:
            for g in grads:
                g.mul_(1.0 / self.scale)

    def update(self, grad_norm: float) -> bool:
        """Record one step's (unscaled) gradient norm; False when the step must be skipped."""
        if not self.enabled:
            return True
        if not math.isfinite(grad_norm):
            self.scale = max(self.min_scale, self.scale / self.factor)
            self.good_steps = 0
            self.skipped += 1
            return False
        self.good_steps += 1
        if self.good_steps >= self.growth_interval:
            self.scale *= self.factor
            self.good_steps = 0
        return True

    def state_dict(self) -> dict[str, float]:
        return {"scale": self.scale, "good_steps": self.good_steps, "skipped": self.skipped}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.scale = float(state["scale"])
        self.good_steps, self.skipped = int(state["good_steps"]), int(state["skipped"])


def loss_scale_note(cfg: RecipeConfig) -> None:
    """``actor.initial_loss_scale`` under bf16/fp32 compute is accepted and has no effect, as in
    Megatron (its bf16 path has no loss scaler); one line says so."""
    init = cfg.actor.initial_loss_scale
    if init is not None and cfg.model.dtype != "float16":
        log.warning("note: actor.initial_loss_scale %g has no effect with model.dtype %s (no "
                    "loss scaling outside float16, as in Megatron's bf16 path)", init,
                    cfg.model.dtype)


def make_scaler(cfg: RecipeConfig) -> LossScaler:
    """The loss scaler ``model.dtype`` calls for: float16 starts at ``actor.initial_loss_scale``
    (default 2^16); other dtypes get an inert one (``loss_scale_note``)."""
    init = cfg.actor.initial_loss_scale
    fp16 = cfg.model.dtype == "float16"
    loss_scale_note(cfg)
    if init is not None and init <= 0:
        raise ConfigError(f"initial_loss_scale must be > 0, got {init:g}",
                          key="actor.initial_loss_scale")
    return LossScaler(fp16, init)


def total_grad_norm(params: list[torch.nn.Parameter]) -> torch.Tensor:
    """The 2-norm of all gradients as a plain tensor. DTensor gradients (FSDP2, tensor parallel)
    are grouped by device mesh, each group's norm is reduced over its mesh, then combined."""
    groups: dict[Any, list[torch.Tensor]] = {}
    for p in params:
        groups.setdefault(getattr(p.grad, "device_mesh", None), []).append(p.grad)
    total = torch.zeros((), dtype=torch.float32)
    for grads in groups.values():
        n = torch.nn.utils.get_total_norm(grads, 2.0, error_if_nonfinite=False, foreach=None)
        if hasattr(n, "full_tensor"):
            n = n.full_tensor()
        total = total + n.float().cpu() ** 2
    return total.sqrt()


def clip_and_step(engine: Any, max_norm: float, check: Any = None) -> float:
    """Unscale, clip to ``max_norm`` and step ``engine``'s optimizer and lr schedule; returns the
    gradient norm before clipping. A non-finite norm under fp16 skips the optimizer step;
    otherwise ``check(norm)`` runs first (the trainer's guard: it raises on a non-finite norm)."""
    params = [p for p in engine.model.parameters() if p.grad is not None]
    engine.scaler.unscale_(p.grad for p in params)
    norm = total_grad_norm(params)
    finite = math.isfinite(float(norm))
    if check is not None and (finite or not engine.scaler.enabled):
        check(float(norm))
    if engine.scaler.update(float(norm)):
        if math.isfinite(float(norm)) and params:
            groups: dict[Any, list[torch.nn.Parameter]] = {}
            for p in params:
                groups.setdefault(getattr(p.grad, "device_mesh", None), []).append(p)
            for group in groups.values():
                torch.nn.utils.clip_grads_with_norm_(group, max_norm, norm.to(group[0].grad.device))
        engine.optimizer.step()
    engine.optimizer.zero_grad(set_to_none=True)
    engine.scheduler.step()
    return float(norm)
