"""The hardware-backend contract and the layout arithmetic every backend shares.

A backend is data plus factories (STYLE §8): it names the device, collective and Ray
resource, says whether it can run here and why not, sets environment variables, validates the
parallel layout, and builds the training and rollout engines. It holds no training logic.
"""

from __future__ import annotations

import os
from typing import Any

from r1zero.host.errors import BackendUnavailable, ConfigError


class Backend:
    name: str = ""
    device: str = "cpu"            # torch device type
    collective: str = "gloo"       # torch.distributed backend
    ray_resource: str = "CPU"      # Ray resource a worker asks for
    devices_per_node: int = 1

    def is_available(self) -> tuple[bool, str]:
        raise NotImplementedError

    def require(self) -> None:
        ok, reason = self.is_available()
        if not ok:
            raise BackendUnavailable(self.name, reason)

    def env_vars(self, cfg: Any) -> dict[str, str]:
        """Environment for this process and Ray workers (config ``backend.env`` wins)."""
        return dict(cfg.backend.env)

    def setup(self, cfg: Any) -> None:
        """Called once in each process before engines are built."""
        for key, value in self.env_vars(cfg).items():
            os.environ.setdefault(key, str(value))

    def world_size(self, cfg: Any) -> int:
        per_node = cfg.backend.devices_per_node or self.devices_per_node
        return cfg.backend.num_nodes * per_node

    def validate_layout(self, cfg: Any) -> None:
        validate_layout(cfg, self.world_size(cfg))

    def make_train_engine(self, cfg: Any, tokenizer: Any) -> Any:
        from r1zero.trainer.engine import TorchTrainEngine

        return TorchTrainEngine(cfg, tokenizer, device=self.torch_device())

    def make_rollout_engine(self, cfg: Any, train_engine: Any, tokenizer: Any) -> Any:
        from r1zero.trainer.engine import SamplerRolloutEngine

        return SamplerRolloutEngine(cfg, train_engine, tokenizer)

    def torch_device(self) -> str:
        return self.device


def validate_layout(cfg: Any, world_size: int) -> None:
    """Check the actor and rollout parallel layouts against ``world_size`` devices.

    Actor: tp * pp must divide world_size (dp = world / (tp*pp)); with ``moe_tp_extend_ep``
    experts split over tp*ep. Rollout: world_size must be a multiple of its tp*pp.
    """
    a, r = cfg.actor, cfg.rollout
    model_parallel = a.tensor_parallel * a.pipeline_parallel
    if world_size % model_parallel:
        raise ConfigError(f"actor tensor_parallel {a.tensor_parallel} x pipeline_parallel "
                          f"{a.pipeline_parallel} = {model_parallel} does not divide the "
                          f"{world_size} devices", key="actor")
    dp = world_size // model_parallel
    ep_span = a.expert_parallel * (a.tensor_parallel if a.moe_tp_extend_ep else 1)
    if a.expert_parallel > 1 and (dp * a.tensor_parallel) % ep_span:
        raise ConfigError(f"actor expert_parallel {a.expert_parallel} (span {ep_span}) must "
                          f"divide dp {dp} x tp {a.tensor_parallel}", key="actor.expert_parallel")
    experts = cfg.model.arch.get("n_routed_experts")
    if experts and a.expert_parallel > 1 and experts % ep_span:
        raise ConfigError(f"{experts} routed experts do not split over {ep_span} expert ranks",
                          key="actor.expert_parallel")
    rollout_mp = r.tensor_parallel * r.pipeline_parallel
    if world_size % rollout_mp:
        raise ConfigError(f"rollout tensor_parallel {r.tensor_parallel} x pipeline_parallel "
                          f"{r.pipeline_parallel} does not divide the {world_size} devices",
                          key="rollout")
    samples = a.global_batch_size * r.n_samples_per_prompt
    if a.micro_batch_size > samples:
        raise ConfigError(f"actor micro_batch_size {a.micro_batch_size} exceeds the "
                          f"{samples} sequences of a step", key="actor.micro_batch_size")
