"""Checkpoint file helpers the engines' state modules share (``engines.state`` for the torch and
fsdp engines, ``engines.megatron.state``): which rank writes, HF exports, and the restricted
readers that never unpickle anything but checkpoint metadata classes and plain data."""

from __future__ import annotations

import contextlib
import json
import pickle
import warnings
from pathlib import Path
from typing import Any

import torch

from r1zero.host.errors import CheckpointError


def is_main() -> bool:
    import torch.distributed as tdist

    return not tdist.is_initialized() or tdist.get_rank() == 0


def barrier() -> None:
    import torch.distributed as tdist

    if tdist.is_initialized():
        tdist.barrier()


@contextlib.contextmanager
def one_process_ok():
    """DCP warns that it assumes one process when no process group exists: that is intended."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        yield


def untied(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Tied tensors share storage, which safetensors refuses: store each tied name's own copy."""
    seen: dict[int, str] = {}
    out = {}
    for k, v in weights.items():
        ptr = v.data_ptr()
        out[k] = v.clone() if ptr in seen else v
        seen.setdefault(ptr, k)
    return out


def save_hf(config: Any, weights: dict[str, torch.Tensor], out: Path, dtype: torch.dtype) -> None:
    """An HF model directory (config + safetensors) of ``weights``, loadable by transformers."""
    from safetensors.torch import save_file

    tied = getattr(config, "tie_word_embeddings", False)
    keep = {k: v.contiguous() for k, v in weights.items() if not (tied and k == "lm_head.weight")}
    save_file(untied(keep), str(out / "model.safetensors"), metadata={"format": "pt"})
    cfg = json.loads((out / "config.json").read_text())
    cfg["dtype"] = str(dtype).removeprefix("torch.")
    (out / "config.json").write_text(json.dumps(cfg, indent=2))


DCP_CLASSES = {
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


def metadata_unpickler(stream: Any):
    class Restricted(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            if name in DCP_CLASSES.get(module, ()) or (
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
                metadata = metadata_unpickler(f).load()
            if getattr(metadata, "storage_meta", None) is None:
                metadata.storage_meta = StorageMeta()
            metadata.storage_meta.load_id = self.load_id
            return metadata

    return SafeReaderImpl


def SafeReader(path: str):  # noqa: N802 - a class built on first use (DCP imports lazily)
    return _safe_reader_class()(path)




def load_plain(f: Path) -> Any:
    """``torch.load(weights_only=True)`` of ``f``: tensors, numbers, strings, lists and dicts only;
    anything else, a missing or a damaged file is a ``CheckpointError`` naming it."""
    try:
        return torch.load(f, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError("missing", path=str(f)) from None
    except pickle.UnpicklingError as exc:
        raise CheckpointError("refused: r1zero never unpickles objects other than tensors, "
                              f"numbers, strings, lists and dicts ({exc})", path=str(f)) from None
    except Exception as exc:  # noqa: BLE001 - truncated zip, empty file, bad magic ...
        raise CheckpointError(f"unreadable: {type(exc).__name__}: {exc}", path=str(f)) from None
