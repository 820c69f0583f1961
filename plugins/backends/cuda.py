"""Built-in backend ``cuda``: torch on NVIDIA GPUs, NCCL collectives, Ray resource ``GPU``;
generation with vLLM when it is installed (or asked for), else r1zero's lean sampler on the GPU.

Unverified on hardware: no machine this project tests on has a GPU. What runs here is the
availability report, the layout rules and the choice of rollout engine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from r1zero.engines.backend import Backend
from r1zero.host.errors import ConfigError
from r1zero.host.hookspecs import hookimpl
from r1zero.plugins.backends.probe import vllm_or_sampler

if TYPE_CHECKING:
    from r1zero.config.recipe import RecipeConfig


class CUDABackend(Backend):
    name = "cuda"
    device = "cuda"
    collective = "nccl"
    ray_resource = "GPU"

    @property
    def devices_per_node(self) -> int:  # type: ignore[override]
        import torch

        return torch.cuda.device_count()

    def is_available(self) -> tuple[bool, str]:
        try:
            import torch
        except ImportError as exc:
            return False, f"torch not importable ({exc})"
        if not torch.cuda.is_available():
            build = f"torch {torch.__version__} build"
            if torch.version.cuda is not None:   # a CUDA build that sees no GPU
                build += f", CUDA {torch.version.cuda}; no GPU visible (driver, CUDA_VISIBLE_DEVICES)"
            return False, f"torch.cuda.is_available() is False ({build})"
        n = torch.cuda.device_count()
        return True, f"{n} GPU(s): {torch.cuda.get_device_name(0)}"

    def per_node(self, cfg: RecipeConfig) -> int:
        per_node = cfg.backend.devices_per_node or self.devices_per_node
        if not per_node:
            raise ConfigError("no CUDA device visible here and backend.devices_per_node is unset; "
                              "set it to the GPUs of one node", key="backend.devices_per_node")
        return per_node

    def device_memory(self) -> int | None:
        import torch

        if not torch.cuda.is_available():
            return None
        return torch.cuda.get_device_properties(0).total_memory

    def make_train_engine(self, cfg: RecipeConfig, tokenizer: Any, dist: Any = None) -> Any:
        self.require()
        return super().make_train_engine(cfg, tokenizer, dist)

    def rollout_engine_class(self, cfg: RecipeConfig) -> type:
        return vllm_or_sampler(self, cfg)


@hookimpl
def register_backends(register):
    register(CUDABackend())
