"""Built-in backend ``ascend_a3``: Huawei Ascend A3 (16 dies per node), torch_npu + HCCL,
Ray resource ``NPU``; vllm-ascend for generation, megatron-core + mindspeed for training the
large layouts of the 671B recipe (MindSpeed-RL's DeepSeek-V3 R1-Zero setup).

Unverified on hardware: this project has no NPU. What is tested here is what needs no chip —
the availability report, the environment of MindSpeed-RL's runtime_env, and the A3 layout
rules. The actor is r1zero's torch engine (one die), fsdp engine (dp / tp) or megatron engine
(``r1zero.engines.megatron``: tp x pp x ep, the 671B recipe's layout) on device ``npu``; the
megatron engine imports ``mindspeed.megatron_adaptor`` first. The megatron engine is tested on
CPU ranks only; on A3 dies it has never run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from r1zero.config.layout import A3_DIES_PER_NODE, resolve_engine
from r1zero.engines.backend import Backend
from r1zero.host.errors import BackendUnavailable
from r1zero.host.hookspecs import hookimpl
from r1zero.plugins.backends.probe import import_error, missing_modules, vllm_or_sampler

if TYPE_CHECKING:
    from r1zero.config.recipe import RecipeConfig

A3_DIE_MEMORY = 64 * 1024 ** 3


def a3_env(rollout_expert_parallel: int) -> dict[str, str]:
    """Environment of the driver and every Ray worker, as MindSpeed-RL's launch script and
    ``configs/envs/runtime_env.yaml`` set it. VLLM_DP_SIZE is the rollout expert parallel size
    (vLLM data-parallel ranks that share the experts of a MoE model)."""
    return {
        "HCCL_CONNECT_TIMEOUT": "1800",
        "HCCL_EXEC_TIMEOUT": "3600",
        "HCCL_BUFFSIZE": "256",
        "CUDA_DEVICE_MAX_CONNECTIONS": "1",
        "TASK_QUEUE_ENABLE": "2",
        "PYTORCH_NPU_ALLOC_CONF": "expandable_segments:True",
        "VLLM_USE_V1": "1",
        "VLLM_DP_SIZE": str(rollout_expert_parallel),
        "USING_LCCL_COM": "0",
        "CPU_AFFINITY_CONF": "1",
        # Ray must not rewrite ASCEND_RT_VISIBLE_DEVICES per worker: the workers bind dies
        # themselves (the NPU counterpart of CUDA_VISIBLE_DEVICES handling).
        "RAY_EXPERIMENTAL_NOSET_ASCEND_RT_VISIBLE_DEVICES": "true",
    }


def train_requirements(cfg: RecipeConfig, world: int = 1) -> tuple[str, ...]:
    """Modules the actor needs: torch_npu always; megatron.core + mindspeed when the actor is
    the megatron engine (pipeline or expert parallel, or ``actor.engine: megatron``)."""
    a = cfg.actor
    engine = resolve_engine(a.engine, a.tensor_parallel, a.pipeline_parallel, a.expert_parallel,
                            world)
    return ("torch_npu", "megatron.core", "mindspeed") if engine == "megatron" else ("torch_npu",)


class AscendA3Backend(Backend):
    name = "ascend_a3"
    device = "npu"
    collective = "hccl"
    ray_resource = "NPU"
    devices_per_node = A3_DIES_PER_NODE
    max_devices_per_node = A3_DIES_PER_NODE

    def is_available(self) -> tuple[bool, str]:
        why = import_error("torch_npu")
        if why is not None:
            return False, f"torch_npu not importable ({why})"
        import torch

        if not torch.npu.is_available():
            return False, ("torch_npu imported but torch.npu.is_available() is False (no NPU "
                           "visible; check the driver and ASCEND_RT_VISIBLE_DEVICES)")
        return True, f"{torch.npu.device_count()} NPU die(s)"

    def env_vars(self, cfg: RecipeConfig) -> dict[str, str]:
        """The A3 defaults, overridden key by key by ``backend.env``."""
        env = a3_env(cfg.rollout.expert_parallel)
        env.update({k: str(v) for k, v in cfg.backend.env.items()})
        return env

    def device_memory(self) -> int | None:
        """64 GiB of HBM per A3 die (two dies per Ascend 910C chip)."""
        return A3_DIE_MEMORY

    def make_train_engine(self, cfg: RecipeConfig, tokenizer: Any, dist: Any = None) -> Any:
        """The torch, fsdp or megatron engine on device ``npu``; for megatron, MindSpeed's
        adaptor is imported first (``engines.megatron.engine.require_megatron``) so that
        megatron-core's CUDA calls reach the NPUs. Unverified on hardware."""
        self.require()
        missing = missing_modules(train_requirements(cfg, dist.world if dist is not None else 1))
        if missing:
            raise BackendUnavailable(self.name, "; ".join(missing))
        import torch_npu  # noqa: F401  - makes torch.device("npu") usable

        return super().make_train_engine(cfg, tokenizer, dist)

    def rollout_engine_class(self, cfg: RecipeConfig) -> type:
        return vllm_or_sampler(self, cfg, ("vllm", "vllm_ascend"))


@hookimpl
def register_backends(register):
    register(AscendA3Backend())
