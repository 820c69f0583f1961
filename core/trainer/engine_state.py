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
``SafeReader`` reads it with an unpickler that admits only DCP's metadata classes.

Every rank of a sharded engine calls ``save_engine_state`` / ``load_engine_state`` (they run
collectives); only rank 0 writes the full-tensor files. The directory must be on storage all
ranks see (one node's disk, or a shared file system across nodes).
"""

from __future__ import annotations

import contextlib
import json
import warnings
from pathlib import Path
from typing import Any

import torch


def _is_main() -> bool:
    import torch.distributed as tdist

    return not tdist.is_initialized() or tdist.get_rank() == 0


def _barrier() -> None:
    import torch.distributed as tdist

    if tdist.is_initialized():
        tdist.barrier()


@contextlib.contextmanager
def _one_process_ok():
    """DCP warns that it assumes one process when no process group exists: that is intended."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        yield


def full_state(engine: Any) -> dict[str, torch.Tensor]:
    """The actor's full fp32 weights on CPU (all ranks gather; only rank 0 needs them)."""
    return {name: t.to("cpu", copy=True) for name, t in engine.full_weights()}


def save_engine_state(engine: Any, out: Path) -> None:
    from safetensors.torch import save_file
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    weights = full_state(engine)
    if _is_main():
        model = engine.model
        dtype = engine.compute_dtype
        if dtype != torch.float32:
            save_file(_untied(weights), str(out / "master.safetensors"), metadata={"format": "pt"})
        export = {k: v.to(dtype) for k, v in weights.items()}
        model.config.save_pretrained(out / "model")
        _save_hf(model.config, export, out / "model", dtype)
        torch.save({"scheduler": engine.scheduler.state_dict(),
                    "scaler": engine.scaler.state_dict()}, out / "engine.pt")
    with _one_process_ok():
        dcp.save({"optim": get_optimizer_state_dict(engine.model, engine.optimizer)},
                 checkpoint_id=str(out / "optim"))
    _barrier()


def _untied(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Tied tensors share storage, which safetensors refuses: store each tied name's own copy."""
    seen: dict[int, str] = {}
    out = {}
    for k, v in weights.items():
        ptr = v.data_ptr()
        out[k] = v.clone() if ptr in seen else v
        seen.setdefault(ptr, k)
    return out


def _save_hf(config: Any, weights: dict[str, torch.Tensor], out: Path, dtype: torch.dtype) -> None:
    """An HF model directory (config + safetensors) of ``weights``, loadable by transformers."""
    from safetensors.torch import save_file

    tied = getattr(config, "tie_word_embeddings", False)
    keep = {k: v.contiguous() for k, v in weights.items() if not (tied and k == "lm_head.weight")}
    save_file(_untied(keep), str(out / "model.safetensors"), metadata={"format": "pt"})
    cfg = json.loads((out / "config.json").read_text())
    cfg["dtype"] = str(dtype).removeprefix("torch.")
    (out / "config.json").write_text(json.dumps(cfg, indent=2))


def read_weights(src: Path) -> dict[str, torch.Tensor]:
    """The fp32 master weights of a checkpoint directory (``master.safetensors`` or ``model/``)."""
    from safetensors.torch import load_file

    files = [src / "master.safetensors"] if (src / "master.safetensors").exists() else \
        sorted((src / "model").glob("*.safetensors"))
    weights: dict[str, torch.Tensor] = {}
    for f in files:
        weights.update(load_file(str(f)))
    return {k: v.float() for k, v in weights.items()}


def load_engine_state(engine: Any, src: Path) -> None:
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions, get_optimizer_state_dict, set_model_state_dict,
        set_optimizer_state_dict)

    weights = read_weights(src)
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
    with _one_process_ok():
        dcp.load(optim, storage_reader=SafeReader(str(src / "optim")))
    set_optimizer_state_dict(engine.model, engine.optimizer, optim["optim"])
    state = torch.load(src / "engine.pt", weights_only=True)
    engine.scheduler.load_state_dict(state["scheduler"])
    engine.scaler.load_state_dict(state["scaler"])


_DCP_CLASSES = {
    "torch.distributed.checkpoint.metadata": {
        "Metadata", "TensorStorageMetadata", "TensorProperties", "_MEM_FORMAT_ENCODING",
        "ChunkStorageMetadata", "BytesStorageMetadata", "MetadataIndex", "StorageMeta"},
    "torch.distributed.checkpoint.filesystem": {"_StorageInfo"},
    # megatron's torch_dist format also stores its cached save plans (plain dataclasses)
    "torch.distributed.checkpoint.planner": {"SavePlan", "WriteItem", "WriteItemType",
                                              "TensorWriteData"},
    "torch.serialization": {"_get_layout"},
    "torch": {"Size"},
    "pathlib": {"PosixPath", "PurePosixPath", "WindowsPath", "PureWindowsPath"},
    "collections": {"OrderedDict"},
}


def _metadata_unpickler(stream: Any):
    import pickle

    class Restricted(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            if name in _DCP_CLASSES.get(module, ()) or (
                    module == "torch" and isinstance(getattr(torch, name, None), torch.dtype)):
                return super().find_class(module, name)
            raise pickle.UnpicklingError(f"{module}.{name} is not a checkpoint metadata class")

    return Restricted(stream)


def _safe_reader_class():
    from torch.distributed.checkpoint import FileSystemReader
    from torch.distributed.checkpoint.metadata import StorageMeta

    class SafeReaderImpl(FileSystemReader):
        """DCP's file reader with its metadata read by a restricted unpickler."""

        def read_metadata(self, *args: Any, **kwargs: Any):
            path = self._get_metadata_path(kwargs.get("rank"))
            with self.fs.create_stream(path, "rb") as f:
                metadata = _metadata_unpickler(f).load()
            if getattr(metadata, "storage_meta", None) is None:
                metadata.storage_meta = StorageMeta()
            metadata.storage_meta.load_id = self.load_id
            return metadata

    return SafeReaderImpl


def SafeReader(path: str):  # noqa: N802 - a class built on first use (DCP imports lazily)
    return _safe_reader_class()(path)


def check_engine_state(src: Path) -> None:
    """Raise ``CheckpointError`` naming the file unless the engine files of ``src`` read back
    (without unpickling anything but DCP metadata classes)."""
    import pickle

    from safetensors import safe_open

    from r1zero.host.errors import CheckpointError
    from r1zero.trainer.megatron import state as megatron_state

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
    meta = src / "optim" / ".metadata"
    try:
        with open(meta, "rb") as fh:
            _metadata_unpickler(fh).load()
    except FileNotFoundError:
        raise CheckpointError("missing", path=str(meta)) from None
    except pickle.UnpicklingError as exc:
        raise CheckpointError(f"refused: {exc}; r1zero never unpickles other objects",
                              path=str(meta)) from None
    if (src / "master.safetensors").exists():
        with safe_open(str(src / "master.safetensors"), "pt") as fh:
            list(fh.keys())
def export_hf(src: Path, out: Path, dtype: str | None = None) -> str:
    """Checkpoint ``src`` -> HF model directory ``out`` in ``dtype`` (default: the run's), from
    the fp32 master weights; tokenizer and generation files are copied. Returns the dtype."""
    import shutil

    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(src / "model")
    name = dtype or str(getattr(config, "dtype", None) or "float32").removeprefix("torch.")
    torch_dtype = getattr(torch, name)
    out.mkdir(parents=True)
    config.save_pretrained(out)
    _save_hf(config, {k: v.to(torch_dtype) for k, v in read_weights(src).items()}, out,
             torch_dtype)
    for f in (src / "model").iterdir():
        if f.is_file() and f.suffix != ".safetensors" and f.name != "config.json" \
                and not f.name.endswith(".index.json"):
            shutil.copy2(f, out / f.name)
    return name
