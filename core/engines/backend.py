"""The hardware-backend contract.

A backend is data plus factories: it names the device, collective and Ray
resource, says whether it can run here and why not, sets environment variables, plans the
parallel layout (``r1zero.config.plan``, the one rule set every backend uses), and builds the
training and rollout engines. It holds no training logic.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Sequence

from r1zero.config.engine_keys import refuse_unimplemented
from r1zero.config.layout import check_node_devices, resolve_engine
from r1zero.config.plan import make_plan
from r1zero.host.errors import BackendUnavailable, ConfigError

if TYPE_CHECKING:
    from r1zero.config.recipe import RecipeConfig


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

    def env_vars(self, cfg: RecipeConfig) -> dict[str, str]:
        """Environment for this process and Ray workers (config ``backend.env`` wins)."""
        return dict(cfg.backend.env)

    def setup(self, cfg: RecipeConfig) -> None:
        """Called once in each process before engines are built."""
        for key, value in self.env_vars(cfg).items():
            os.environ.setdefault(key, str(value))

    max_devices_per_node: int | None = None   # a node's device count, when fixed (A3: 16)

    def per_node(self, cfg: RecipeConfig) -> int:
        return cfg.backend.devices_per_node or self.devices_per_node

    def world_size(self, cfg: RecipeConfig) -> int:
        return cfg.backend.num_nodes * self.per_node(cfg)

    def device_memory(self) -> int | None:
        """Bytes of one device, for the plan's memory checks; None when unknown."""
        return None

    def plan(self, cfg: RecipeConfig) -> Any:
        """The recipe's layout on this backend (``r1zero.config.plan.Plan``), failures listed."""
        node_error = None
        try:
            check_node_devices(cfg.backend.num_nodes, self.per_node(cfg), self.max_devices_per_node)
        except ConfigError as exc:
            node_error = exc
        return make_plan(cfg, self.world_size(cfg), backend=self.name,
                         device_memory=self.device_memory(), node_error=node_error)

    def validate_layout(self, cfg: RecipeConfig) -> Any:
        """The plan, or one ``ConfigError`` naming every failing check with its numbers."""
        return self.plan(cfg).require()

    def train_engine_class(self, cfg: RecipeConfig, world: int = 1) -> type:
        """The class ``make_train_engine`` builds for this recipe on ``world`` ranks: torch on
        one, fsdp on more or with tensor parallel, megatron for pipeline or expert parallel or
        when asked (``config.layout.resolve_engine``). Its
        ``name`` and ``implements`` (``r1zero.config.engine_keys``) are checked before it is
        built."""
        a = cfg.actor
        engine = resolve_engine(a.engine, a.tensor_parallel, a.pipeline_parallel,
                                a.expert_parallel, world)
        if engine == "fsdp":
            from r1zero.engines.fsdp import FSDPTrainEngine

            return FSDPTrainEngine
        if engine == "megatron":
            from r1zero.engines.megatron.engine import MegatronTrainEngine, require_megatron

            # before anything runs: megatron-core, and on the cpu backend (where this process's
            # machine is the ranks' machine) a device it can use; accelerator backends check
            # the device in each rank (a Ray driver may run on a head node without one)
            require_megatron(device=self.device == "cpu")
            return MegatronTrainEngine
        if engine != "torch":
            raise ConfigError(f"actor.engine {engine!r} is not built by backend {self.name!r}",
                              key="actor.engine")
        if world > 1 and a.distributed_optimizer:
            raise ConfigError("distributed_optimizer is not implemented by the torch engine "
                              "(every rank keeps the whole optimizer state); use actor.engine: "
                              "fsdp", key="actor.distributed_optimizer")
        from r1zero.engines.torch_engine import TorchTrainEngine

        return TorchTrainEngine

    def make_train_engine(self, cfg: RecipeConfig, tokenizer: Any, dist: Any = None) -> Any:
        """``dist``: this rank's ``trainer.dist.DataParallel`` (its device mesh), None in a
        one-process run."""
        cls = self.train_engine_class(cfg, dist.world if dist is not None else 1)
        name = getattr(cls, "name", "")
        if name in ("fsdp", "megatron") and dist is None:
            from r1zero.engines.fsdp import ensure_group

            ensure_group(self.collective)        # a one-rank group for a one-process run
        if name == "fsdp":
            return cls(cfg, tokenizer, device=self.torch_device(),
                       mesh=dist.mesh if dist is not None else None)
        return cls(cfg, tokenizer, device=self.torch_device())

    def rollout_engine_class(self, cfg: RecipeConfig) -> type:
        """The class ``make_rollout_engine`` builds: r1zero's lean sampler here."""
        from r1zero.engines.rollout import SamplerRolloutEngine

        if cfg.rollout.engine not in ("auto", "sampler"):
            raise ConfigError(f"{cfg.rollout.engine!r} is not built by backend {self.name!r}, "
                              "which generates with 'sampler'", key="rollout.engine")
        return SamplerRolloutEngine

    def make_rollout_engine(self, cfg: RecipeConfig, train_engine: Any, tokenizer: Any,
                            stops: Sequence[Sequence[int]], generates: bool = True) -> Any:
        """The generator. ``stops``: what ends a sample, each as token ids -- EOS and the
        template's stop words (a word may be several tokens). ``generates`` False (a
        rollout instance's rank other than its first: it gets its samples from the instances): a
        ``WeightRelay``, which holds no rollout model and only takes its part in the
        collective weight gather."""
        cls = self.rollout_engine_class(cfg)       # validates rollout.engine on every rank
        if not generates:
            from r1zero.engines.rollout import WeightRelay

            return WeightRelay(cfg, train_engine, getattr(cls, "synced_at_build", False))
        return cls(cfg, train_engine, tokenizer, stops)

    def refuse_unimplemented(self, cfg: RecipeConfig, world: int = 1) -> None:
        """A ``ConfigError`` naming every set key the chosen engines do not act on."""
        refuse_unimplemented(cfg, self.train_engine_class(cfg, world),
                             self.rollout_engine_class(cfg))

    def torch_device(self) -> str:
        return self.device
