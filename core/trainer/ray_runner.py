"""Data-parallel GRPO over Ray: one integrated worker (rollout, reference and actor on one
device, MindSpeed-RL's ``use_integrated_worker``) per device of the cluster.

    r1zero train recipe.yaml ray.enabled=true                      # local Ray on this machine
    r1zero launch recipe.yaml --master-addr IP > node.sh           # Ray cluster: every node runs
                                                                   # node.sh (ray.address: auto)

``run_on_ray(cfg)`` joins the cluster (or starts a local one), reserves ``world`` devices under
the backend's Ray resource name with one STRICT_PACK placement group per node, starts one
``TrainWorker`` actor per device, forms a ``torch.distributed`` group (the backend's collective)
by TCP rendezvous at rank 0's node, lays the ranks out as a (dp, tp) device mesh and runs
``GRPOTrainer`` on every rank: each worker is a rank of the sharded engine (``actor.engine:
fsdp``, the default here), which does its own gradient collectives. The update equals the
single-process one (``trainer.dist``); rank 0 writes metrics and plots, all ranks write their
shards of each checkpoint.

A rank whose process dies is reported as ``rank N (pid P) died: SIGNAL; resume with
--resume``. Ray does not pass the signal on, so each rank writes Python's fatal-signal report
(``faulthandler``: SIGSEGV, SIGABRT, SIGBUS, SIGFPE, SIGILL) to ``logging.dir/ranks/rank<N>.fault``;
a rank gone without one was killed by the one signal no process can catch or report, SIGKILL
(``kill -9``, the kernel's OOM killer).
"""

from __future__ import annotations

import faulthandler
import logging
import os
import re
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from r1zero.data.prompts import load_dataset, output_dir
from r1zero.host.errors import BackendUnavailable, ConfigError, R1ZeroError
from r1zero.trainer import preflight
from r1zero.trainer.launch import (
    cluster_ready,
    expected_resources,
    per_node,
    runtime_env,
    start_local,
)

if TYPE_CHECKING:
    from r1zero.config.recipe import RecipeConfig

log = logging.getLogger(__name__)
PLACEMENT_TIMEOUT_S = 300
# Ray's per-accelerator switch that leaves all devices visible to every worker
_VISIBLE = {"GPU": "CUDA_VISIBLE_DEVICES", "NPU": "ASCEND_RT_VISIBLE_DEVICES"}


class TrainWorker:
    """Rank ``rank`` of ``world``: a ``GRPOTrainer`` with a ``DataParallel`` helper (a Ray actor)."""
    def __init__(self, rank: int, world: int, fault_file: str | None = None):
        self.rank, self.world = rank, world
        self.trainer: Any = None
        self.dist: Any = None
        if fault_file:                  # what killed this process, for the driver's message
            Path(fault_file).parent.mkdir(parents=True, exist_ok=True)
            self._fault = open(fault_file, "w")      # noqa: SIM115 - open while alive
            faulthandler.enable(file=self._fault)

    def pid(self) -> int:
        return os.getpid()

    def rendezvous(self) -> tuple[str, int]:
        """This node's IP and a port free on it (asked of rank 0)."""
        import ray

        with socket.socket() as s:
            s.bind(("", 0))
            return ray.util.get_node_ip_address(), s.getsockname()[1]

    def setup(self, cfg: RecipeConfig, master: tuple[str, int], resume: bool) -> None:
        """Resolve ``cfg`` in this process (its plugin host: entry points and local modules),
        join the process group and build the trainer on the dataset the driver prepared."""
        from r1zero.data.pipeline import from_config
        from r1zero.trainer.dist import DataParallel
        from r1zero.trainer.grpo import GRPOTrainer

        resolved = from_config(cfg)
        backend = resolved.backend
        device = backend.torch_device()
        if device != "cpu":
            _select_device(device, backend.ray_resource)
        self.dist = DataParallel.init(self.rank, self.world, backend.collective, master, device,
                                      tp=cfg.actor.tensor_parallel)
        self.trainer = GRPOTrainer(resolved, data=load_dataset(output_dir(cfg)), resume=resume,
                                   dist=self.dist)
        self.dist.check_same("the prompts, data position and step",
                             (len(self.trainer.prompts), self.trainer.order.state(), self.trainer.step))
        weights = sum(float(t.float().sum()) for _, t in self.trainer.engine.full_weights())
        self.dist.check_same("the model weights (sum)", f"{weights:.6g}")

    def run(self) -> list[dict]:
        history = self.trainer.run()
        return history if self.rank == 0 else []

    def apply(self, fn: Callable, *args: Any) -> Any:
        """``fn(trainer, *args)`` on this rank (tests and tools)."""
        return fn(self.trainer, *args)

    def close(self) -> None:
        if self.trainer is not None:
            self.trainer.close()
        if self.dist is not None:
            self.dist.close()


def _select_device(device: str, resource: str) -> None:
    """Bind this process to its device: index 0 when Ray narrowed the visible devices to the one
    it assigned, the assigned id when ``RAY_EXPERIMENTAL_NOSET_<VAR>`` keeps all visible."""
    import ray
    import torch

    ids = ray.get_runtime_context().get_accelerator_ids().get(resource, [])
    var = _VISIBLE.get(resource, "")
    index = int(ids[0]) if ids and os.environ.get(f"RAY_EXPERIMENTAL_NOSET_{var}") else 0
    getattr(torch, device).set_device(index)


def _actor_options(resource: str) -> dict[str, Any]:
    if resource == "CPU":
        return {"num_cpus": 1}
    if resource == "GPU":
        return {"num_cpus": 0, "num_gpus": 1}
    return {"num_cpus": 0, "resources": {resource: 1}}


class WorkerGroup:
    """``world`` ranks as Ray actors on per-node STRICT_PACK placement groups."""
    def __init__(self, cfg: RecipeConfig, backend: Any, resume: bool = False):
        import ray
        from ray.util.placement_group import placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy


        self.world = backend.world_size(cfg)
        res, n = backend.ray_resource, per_node(backend, cfg)
        ok, text = cluster_ready(ray.cluster_resources(), expected_resources(backend, cfg))
        if not ok:                      # not a matter of waiting for other jobs to finish
            raise BackendUnavailable(backend.name, f"the Ray cluster is too small: {text}")
        self.groups = [placement_group([{res: 1}] * n, strategy="STRICT_PACK")
                       for _ in range(cfg.backend.num_nodes)]
        self.actors: list[Any] = []
        self.pids: list[int] = []
        self.fault_dir = Path(cfg.logging.dir) / "ranks"
        try:
            ready, _ = ray.wait([g.ready() for g in self.groups], num_returns=len(self.groups),
                                timeout=PLACEMENT_TIMEOUT_S)
            if len(ready) < len(self.groups):
                raise BackendUnavailable(backend.name, (
                    f"Ray could not place {cfg.backend.num_nodes} node(s) x {n} {res} within "
                    f"{PLACEMENT_TIMEOUT_S} s (busy, or fewer per node); available now: "
                    f"{ray.available_resources().get(res, 0):g} {res}"))
            remote = ray.remote(TrainWorker)
            env = runtime_env(backend, cfg)
            for rank in range(self.world):
                strategy = PlacementGroupSchedulingStrategy(
                    self.groups[rank // n], placement_group_bundle_index=rank % n)
                self.actors.append(remote.options(
                    scheduling_strategy=strategy, runtime_env=env, **_actor_options(res)
                ).remote(rank, self.world, str(self.fault_file(rank))))
            self.pids = ray.get([a.pid.remote() for a in self.actors])
            master = ray.get(self.actors[0].rendezvous.remote())
            self.wait([a.setup.remote(cfg, master, resume) for a in self.actors])
        except BaseException:
            self.close()
            raise

    def wait(self, refs: Sequence[Any]) -> list[Any]:
        """Results in rank order; the first rank to fail stops them all (the others would wait
        in a collective forever) and its error is raised."""
        import ray

        from ray.exceptions import RayActorError

        refs = list(refs)
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            try:
                ray.get(done[0])        # raises the rank's own error
            except RayActorError as exc:
                raise self.died(refs.index(done[0]), exc) from None
        return ray.get(refs)

    def fault_file(self, rank: int) -> Path:
        return self.fault_dir / f"rank{rank}.fault"

    def died(self, rank: int, exc: Exception) -> R1ZeroError:
        """``rank N (pid P) died: SIGNAL; resume with --resume`` (module doc)."""
        pid = self.pids[rank] if rank < len(self.pids) else "?"
        try:
            report = self.fault_file(rank).read_text(errors="replace")
        except OSError:
            report = ""
        fatal = re.search(r"Fatal Python error: (.+)", report)
        if fatal:
            why = fatal.group(1).strip()
        elif "died unexpectedly" in str(exc) or "worker process has died" in str(exc):
            why = "SIGKILL"
        else:
            why = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return R1ZeroError(f"rank {rank} (pid {pid}) died: {why}; resume with --resume")

    def apply(self, fn: Callable, per_rank_args: Sequence[tuple] | None = None) -> list[Any]:
        args = per_rank_args or [()] * self.world
        return self.wait([a.apply.remote(fn, *x) for a, x in zip(self.actors, args)])

    def run(self) -> list[dict]:
        return self.wait([a.run.remote() for a in self.actors])[0]

    def close(self) -> None:
        import ray
        from ray.util.placement_group import remove_placement_group

        if self.actors:
            try:
                ray.get([a.close.remote() for a in self.actors], timeout=60)
            except Exception as exc:   # a dead rank: its siblings are killed below anyway
                log.warning("closing Ray workers: %s", exc)
        for a in self.actors:
            ray.kill(a)
        for g in self.groups:
            remove_placement_group(g)
        self.actors, self.groups = [], []


def connect(cfg: RecipeConfig, backend: Any) -> bool:
    """Join ``ray.address`` or start a local Ray; True when this call started it. An already
    initialised Ray (a test's, a notebook's) is used as it is."""
    import ray


    if ray.is_initialized():
        return False
    if cfg.ray.address is None:
        start_local(backend, cfg)
    else:
        ray.init(address=cfg.ray.address, runtime_env=runtime_env(backend, cfg),
                 logging_level="WARNING")
    return True


def run_on_ray(cfg: RecipeConfig, resume: bool = False) -> list[dict]:
    """Train ``cfg`` data-parallel on Ray; returns rank 0's per-step metrics (as ``run()``)."""

    from r1zero.data.pipeline import from_config, prepare

    if not cfg.ray.integrated_worker:
        raise ConfigError("only the integrated worker is implemented (actor, reference and "
                          "rollout on the same devices); set ray.integrated_worker: true",
                          key="ray.integrated_worker")
    resolved = from_config(cfg)
    backend = resolved.backend
    backend.require()
    backend.validate_layout(cfg)
    backend.refuse_unimplemented(cfg, backend.world_size(cfg))
    refuse_uneven_steps(resolved.algorithm, backend.world_size(cfg))
    lock = preflight.start(cfg, resume)  # the driver holds the run directories for all ranks
    try:
        prepare(resolved)               # once, here: the ranks then load it
        return _run_group(cfg, backend, resume)
    finally:
        lock.release()


def _run_group(cfg: RecipeConfig, backend: Any, resume: bool) -> list[dict]:
    import ray

    started = connect(cfg, backend)
    try:
        group = WorkerGroup(cfg, backend, resume)
        try:
            return group.run()
        finally:
            group.close()
    finally:
        if started:
            ray.shutdown()


def refuse_uneven_steps(algorithm: Any, world: int) -> None:
    """Dynamic sampling and overlong masking change how many sequences each rank trains on,
    so ranks would take different numbers of optimizer steps and wait in a collective
    forever; refused on more than one rank."""
    for key, on in (("dynamic_sampling", algorithm.dynamic_sampling),
                    ("overlong_mask", algorithm.overlong_mask)):
        if on and world > 1:
            raise ConfigError(f"algorithm {algorithm.name!r}: {key} is not implemented for "
                              f"data-parallel runs ({world} ranks); set algorithm.{key}: false "
                              "or train on one rank", key=f"algorithm.{key}")
