"""The megatron engine's state in a checkpoint directory, resumable at another tp/pp/dp layout.

    model/       HF export (config + safetensors in ``model.dtype``) gathered from the shards:
                 ``r1zero eval``, ``r1zero export`` and transformers load it as any checkpoint
    mcore/       megatron-core ``dist_checkpointing`` (torch_dist format): the sharded weights
                 and the optimizer state (fp32 master weights, Adam moments) with their global
                 offsets, so a run at another tp x pp x dp layout loads it resharded
    engine.pt    ``{"engine": "megatron", "updates": n, "optimizers": k, "layout": "tp .."}``
                 (plain numbers and strings; k, the optimizers megatron chains, must match
                 at resume: routed experts get their own only when expert_parallel > 1)

Every rank calls ``save`` / ``load`` (collectives); global rank 0 writes ``model/`` and
``engine.pt``. megatron's loader unpickles the torch_dist ``.metadata`` file and reads every
bytes item (``_extra_state``, optimizer param groups) with ``torch.load(weights_only=False)``;
``check`` reads them first with the restricted readers of ``engines.state_io`` (checkpoint
metadata classes; ``weights_only=True`` items; every shard's extent) and ``common.pt`` with
``torch.load(weights_only=True)``, and ``load`` runs megatron with those readers
(``safe_strategy``): a crafted checkpoint is refused with a ``CheckpointError`` naming the
file or item, never unpickled.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from r1zero.engines.state_io import (SafeReader, check_dcp, dcp_errors, is_main, load_plain,
                                    safe_planner_class, save_hf)
from r1zero.host.errors import CheckpointError

MCORE, ENGINE_FILE = "mcore", "engine.pt"


def is_megatron_state(src: Path) -> bool:
    return (Path(src) / MCORE).is_dir()


def save(engine: Any, out: Path) -> None:
    from megatron.core import dist_checkpointing
    from transformers import AutoConfig

    out = Path(out)
    weights = {k: v.to("cpu", copy=True) for k, v in engine.full_weights()}   # collective
    if is_main():
        config = AutoConfig.from_pretrained(engine.cfg.model.path,
                                            trust_remote_code=engine.cfg.model.trust_remote_code)
        (out / "model").mkdir(parents=True, exist_ok=True)
        config.save_pretrained(out / "model")
        dtype = engine.compute_dtype
        save_hf(config, {k: v.to(dtype) for k, v in weights.items()}, out / "model", dtype)
        torch.save({"engine": "megatron", "updates": engine.updates,
                    "optimizers": optimizer_count(engine), "layout": layout(engine)},
                   out / ENGINE_FILE)
        (out / MCORE).mkdir(parents=True, exist_ok=True)
    torch.distributed.barrier()
    dist_checkpointing.save(engine.sharded_state(loading=False), str(out / MCORE))
    torch.distributed.barrier()


def load(engine: Any, src: Path) -> None:
    from megatron.core import dist_checkpointing


    src = Path(src)
    if not is_megatron_state(src):
        raise CheckpointError("not a megatron engine checkpoint (no mcore/ directory); "
                              "checkpoints of the torch and fsdp engines load into those "
                              "engines", path=str(src))
    saved = check(src)
    if saved.get("optimizers", optimizer_count(engine)) != optimizer_count(engine):
        raise CheckpointError(
            f"its optimizer state was saved at {saved.get('layout')} as "
            f"{saved['optimizers']} optimizer(s), and this run at {layout(engine)} has "
            f"{optimizer_count(engine)}: megatron keeps routed experts in an optimizer of their "
            f"own only when expert_parallel > 1, and does not reshard between the two; resume "
            f"with expert_parallel on the same side of 1", path=str(src))
    with dcp_errors(src / MCORE):
        state = dist_checkpointing.load(engine.sharded_state(loading=True), str(src / MCORE),
                                        sharded_strategy=safe_strategy())
    engine.model.load_state_dict(state["model"])
    engine.optimizer.load_state_dict(state["optimizer"])
    engine.updates = saved["updates"]


def safe_strategy() -> Any:
    """megatron's torch_dist load strategy with its bytes items (``_extra_state``, optimizer
    step and param groups) read by ``state_io.plain_item`` and its ``.metadata`` by the
    restricted unpickler. megatron builds its planner and reader inside ``load``; they are
    swapped for the safe ones for the length of that call (this process only)."""
    from megatron.core.dist_checkpointing.strategies import torch as mtorch

    class SafeTorchDistLoad(mtorch.TorchDistLoadShardedStrategy):
        def load(self, sharded_state_dict: Any, checkpoint_dir: Any) -> Any:
            planner, reader = mtorch.MCoreLoadPlanner, mtorch._get_filesystem_reader
            mtorch.MCoreLoadPlanner = safe_planner_class(planner)
            mtorch._get_filesystem_reader = _safe_filesystem_reader
            try:
                return super().load(sharded_state_dict, checkpoint_dir)
            finally:
                mtorch.MCoreLoadPlanner, mtorch._get_filesystem_reader = planner, reader

    return SafeTorchDistLoad()


def _safe_filesystem_reader(checkpoint_dir: Any, cache_metadata: bool = False) -> Any:
    """A DCP file reader whose ``.metadata`` goes through the restricted unpickler."""
    return SafeReader(str(checkpoint_dir))


def optimizer_count(engine: Any) -> int:
    """How many optimizers megatron chains for this layout (dense, and experts when ep > 1)."""
    return len(getattr(engine.optimizer, "chained_optimizers", [engine.optimizer]))


def layout(engine: Any) -> str:
    a = engine.cfg.actor
    return (f"tp {a.tensor_parallel} x pp {a.pipeline_parallel} x ep {a.expert_parallel}"
            + (" (moe_tp_extend_ep)" if a.moe_tp_extend_ep else ""))


def check(src: Path) -> dict[str, Any]:
    """Raise ``CheckpointError`` naming the file unless ``src``'s megatron state reads back
    without unpickling anything but checkpoint metadata; the contents of ``engine.pt``."""

    src = Path(src)
    f = src / ENGINE_FILE
    state = load_plain(f)
    if not isinstance(state, dict) or state.get("engine") != "megatron" \
            or not isinstance(state.get("updates"), int):
        raise CheckpointError("incomplete: needs engine 'megatron' and an integer 'updates'",
                              path=str(f))
    check_dcp(src / MCORE)
    common = src / MCORE / "common.pt"
    if common.exists():
        load_plain(common)
    return state
