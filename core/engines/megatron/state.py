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
``engine.pt``. megatron's loader unpickles the torch_dist ``.metadata`` file, so ``check``
reads it first with the restricted unpickler of ``engines.state`` (checkpoint metadata
classes only) and ``common.pt`` with ``torch.load(weights_only=True)``: a crafted checkpoint
is refused with a ``CheckpointError`` before megatron opens it.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from r1zero.engines.state_io import is_main, load_plain, metadata_unpickler, save_hf
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
    state = dist_checkpointing.load(engine.sharded_state(loading=True), str(src / MCORE))
    engine.model.load_state_dict(state["model"])
    engine.optimizer.load_state_dict(state["optimizer"])
    engine.updates = saved["updates"]


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
    meta = src / MCORE / ".metadata"
    try:
        with open(meta, "rb") as fh:
            metadata_unpickler(fh).load()
    except FileNotFoundError:
        raise CheckpointError("missing", path=str(meta)) from None
    except (pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise CheckpointError(f"refused: {exc}; r1zero never unpickles other objects",
                              path=str(meta)) from None
    common = src / MCORE / "common.pt"
    if common.exists():
        load_plain(common)
    return state
