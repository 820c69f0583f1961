"""Import probes for vendor stacks (torch_npu, vllm, megatron.core, mindspeed).

Backends call these inside ``is_available`` and the factories, never at module top, so a backend lists and reports on any machine. A probe returns the reason a module cannot be
imported, in the form an error message wants: ``"No module named 'torch_npu'"``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from r1zero.engines.backend import Backend
from r1zero.engines.vllm import VLLMRolloutEngine, use_vllm

if TYPE_CHECKING:
    from r1zero.config.recipe import RecipeConfig


def import_error(module: str) -> str | None:
    """None when ``module`` imports; otherwise why not (the exception text, typed if unusual)."""
    try:
        importlib.import_module(module)
    except ImportError as exc:
        return str(exc)
    except Exception as exc:  # noqa: BLE001 - a vendor package that crashes on import
        return f"{type(exc).__name__}: {exc}"
    return None


def missing_modules(modules: Iterable[str]) -> list[str]:
    """``"<module> not importable (<why>)"`` for each module that does not import, in order."""
    out = []
    for module in modules:
        why = import_error(module)
        if why is not None:
            out.append(f"{module} not importable ({why})")
    return out


def vllm_or_sampler(backend: Any, cfg: RecipeConfig, modules: Sequence[str] = ("vllm",)) -> type:
    """The rollout engine class ``rollout.engine`` selects (``use_vllm``): vLLM for "vllm"
    always, for "auto" when every module in ``modules`` imports; else the base backend's lean
    sampler."""
    engine, why, module = cfg.rollout.engine, None, modules[0]
    if engine in ("vllm", "auto"):
        for module in modules:
            why = import_error(module)
            if why is not None:
                break
    if use_vllm(engine, why, backend.name, module):
        backend.require()

        return VLLMRolloutEngine
    return Backend.rollout_engine_class(backend, cfg)
