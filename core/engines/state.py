"""A train engine's state in a checkpoint directory, sharded or not, at any world size.

    model/            HF export in ``model.dtype`` (+ tokenizer, written by the caller):
                      ``AutoModelForCausalLM.from_pretrained(dir)`` loads it
    master.safetensors  the fp32 master weights (only when ``model.dtype`` is not float32; for
                      float32 runs ``model/`` is the master copy)
    optim/            the optimizer state via ``torch.distributed.checkpoint``: every rank writes
                      its own shard, keyed by parameter name, so a run of another world size
                      (2 -> 1, 1 -> 2) loads it resharded
    engine.pt         lr schedule and loss scale (plain numbers; ``torch.load(weights_only=True)``)

Nothing here unpickles arbitrary objects: DCP's own reader unpickles its ``.metadata`` file, so
``SafeReader`` reads it with an unpickler that admits only DCP's metadata classes, and its
bytes items (the optimizer's ``param_groups``) are read with ``weights_only=True``
(``SafeLoadPlanner``); ``check_engine_state`` reads them all, and checks every shard's
extent, before anything is loaded (``state_io.check_dcp``).

Every rank of a sharded engine calls ``save_engine_state`` / ``load_engine_state`` (they run
collectives); only rank 0 writes the full-tensor files. The directory must be on storage all
ranks see (one node's disk, or a shared file system across nodes).
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from r1zero.engines.megatron import state as megatron_state
from r1zero.engines.state_io import (SafeLoadPlanner, SafeReader, barrier, check_dcp,
                                    dcp_errors, inside, is_main, one_process_ok, run_dtype,
                                    save_hf, untied)
from r1zero.host.errors import CheckpointError


def full_state(engine: Any) -> dict[str, torch.Tensor]:
    """The actor's full fp32 weights on CPU (all ranks gather; only rank 0 needs them)."""
    return {name: t.to("cpu", copy=True) for name, t in engine.full_weights()}


def save_engine_state(engine: Any, out: Path) -> None:
    from safetensors.torch import save_file
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    weights = full_state(engine)
    if is_main():
        model = engine.model
        dtype = engine.compute_dtype
        if dtype != torch.float32:
            save_file(untied(weights), str(out / "master.safetensors"), metadata={"format": "pt"})
        export = {k: v.to(dtype) for k, v in weights.items()}
        model.config.save_pretrained(out / "model")
        save_hf(model.config, export, out / "model", dtype)
        torch.save({"scheduler": engine.scheduler.state_dict(),
                    "scaler": engine.scaler.state_dict()}, out / "engine.pt")
    with one_process_ok():
        dcp.save({"optim": get_optimizer_state_dict(engine.model, engine.optimizer)},
                 checkpoint_id=str(out / "optim"))
    barrier()


MASTER = "master.safetensors"


def require_master(src: Path, dtype: str | None) -> None:
    """A run in a dtype other than float32 keeps its fp32 master weights in
    ``master.safetensors``; without it only the rounded export is left: CheckpointError."""
    if dtype not in (None, "float32") and not (src / MASTER).exists():
        raise CheckpointError(f"{MASTER} is missing: a {dtype} run keeps its fp32 master weights "
                              f"there, and model/ holds only the {dtype} export; resuming from "
                              f"it would silently drop the masters' precision", path=str(src))


def read_weights(src: Path, need_master: str | None = None) -> dict[str, torch.Tensor]:
    """The fp32 master weights of a checkpoint directory (``master.safetensors`` or ``model/``),
    files inside the checkpoint only; ``need_master`` (the run's dtype) requires the masters."""
    from safetensors.torch import load_file

    require_master(src, need_master)
    files = [src / MASTER] if (src / MASTER).exists() else \
        sorted((src / "model").glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"no weights: neither {MASTER} nor model/*.safetensors",
                              path=str(src))
    weights: dict[str, torch.Tensor] = {}
    for f in files:
        weights.update(load_file(str(inside(src, f))))
    if not weights:
        raise CheckpointError("no weights: the weight files hold no tensors", path=str(src))
    return {k: v.float() for k, v in weights.items()}


def load_engine_state(engine: Any, src: Path) -> None:
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions, get_optimizer_state_dict, set_model_state_dict,
        set_optimizer_state_dict)

    weights = read_weights(src, str(engine.compute_dtype).removeprefix("torch."))
    tied = getattr(engine.model.config, "tie_word_embeddings", False)
    if tied and "lm_head.weight" not in weights and "model.embed_tokens.weight" in weights:
        weights["lm_head.weight"] = weights["model.embed_tokens.weight"]
    expected = set(engine.model.state_dict())
    if expected != set(weights):
        raise RuntimeError(f"{src}: checkpoint does not match the model (missing "
                           f"{sorted(expected - set(weights))[:5]}, unexpected "
                           f"{sorted(set(weights) - expected)[:5]})")
    set_model_state_dict(engine.model, weights, options=StateDictOptions(full_state_dict=True))
    optim = {"optim": get_optimizer_state_dict(engine.model, engine.optimizer)}
    with one_process_ok(), dcp_errors(src / "optim"):
        dcp.load(optim, storage_reader=SafeReader(str(src / "optim")), planner=SafeLoadPlanner())
    set_optimizer_state_dict(engine.model, engine.optimizer, optim["optim"])
    state = torch.load(src / "engine.pt", weights_only=True)
    engine.scheduler.load_state_dict(state["scheduler"])
    engine.scaler.load_state_dict(state["scaler"])


def check_engine_state(src: Path) -> None:
    """Raise ``CheckpointError`` naming the file unless the engine files of ``src`` read back
    (without unpickling anything but DCP metadata classes)."""
    from safetensors import safe_open


    if megatron_state.is_megatron_state(src):
        megatron_state.check(src)
        return
    f = src / "engine.pt"
    try:
        state = torch.load(f, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError("missing", path=str(f)) from None
    except pickle.UnpicklingError as exc:
        raise CheckpointError("refused: r1zero never unpickles objects other than tensors, "
                              f"numbers, strings, lists and dicts ({exc})", path=str(f)) from None
    if not isinstance(state, dict) or not {"scheduler", "scaler"} <= set(state):
        raise CheckpointError("incomplete: needs 'scheduler' and 'scaler'", path=str(f))
    check_dcp(src / "optim")
    require_master(src, run_dtype(src))
    if (src / "master.safetensors").exists():
        with safe_open(str(src / "master.safetensors"), "pt") as fh:
            list(fh.keys())
def export_hf(src: Path, out: Path, dtype: str | None = None) -> str:
    """Checkpoint ``src`` -> HF model directory ``out`` in ``dtype`` (default: the run's), from
    the fp32 master weights; tokenizer and generation files are copied. Returns the dtype."""
    import shutil

    from transformers import AutoConfig

    inside(src, src / "model" / "config.json")
    weights = read_weights(src)
    copies = [inside(src, f) for f in sorted((src / "model").iterdir())
              if f.suffix != ".safetensors" and f.name != "config.json"
              and not f.name.endswith(".index.json") and (f.is_symlink() or f.is_file())]
    config = AutoConfig.from_pretrained(src / "model")
    name = dtype or str(getattr(config, "dtype", None) or "float32").removeprefix("torch.")
    torch_dtype = getattr(torch, name)
    out.mkdir(parents=True)
    config.save_pretrained(out)
    save_hf(config, {k: v.to(torch_dtype) for k, v in weights.items()}, out, torch_dtype)
    for f in copies:
        shutil.copyfile(f, out / f.name)
    return name
