"""Checkpoint file helpers the engines' state modules share (``engines.state`` for the torch and
fsdp engines, ``engines.megatron.state``): which rank writes, HF exports, and the restricted
readers that never unpickle anything but checkpoint metadata classes and plain data.

``torch.distributed.checkpoint`` (and megatron's torch_dist format, built on it) stores every
value that is not a tensor -- the optimizer's ``param_groups``, megatron's ``_extra_state`` --
as a *bytes item* that its default load planner reads with ``torch.load(weights_only=False)``:
a crafted item runs code. Here every bytes item is read with ``weights_only=True``
(``SafeLoadPlanner``; tensors, numbers, strings, lists, tuples and dicts only) and
``check_dcp`` reads them all, with every storage entry's file and extent, before a load.
Checkpoints of earlier releases hold plain data in those items and load unchanged; an item
holding any other object is refused by name.
"""

from __future__ import annotations

import contextlib
import io
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


def plain_item(fqn: str, value: Any, where: str = "") -> Any:
    """A DCP bytes item read with ``torch.load(weights_only=True)``; CheckpointError naming
    the item when it holds anything but plain data (or is damaged)."""
    try:
        return torch.load(value, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise CheckpointError(f"refused: item {fqn!r} holds objects other than tensors, numbers, "
                              f"strings, lists and dicts, and r1zero never unpickles those "
                              f"({first})", path=where or None) from None
    except Exception as exc:  # noqa: BLE001 - truncated or garbage bytes
        raise CheckpointError(f"item {fqn!r} is unreadable: {type(exc).__name__}: {exc}",
                              path=where or None) from None


def safe_planner_class(base: type) -> type:
    """``base`` (a DCP load planner class) with its bytes items read by ``plain_item``."""
    from torch.distributed.checkpoint.default_planner import set_element

    class SafeBytes(base):
        def load_bytes(self, read_item: Any, value: Any) -> None:
            fqn = read_item.dest_index.fqn
            obj = plain_item(fqn, value)
            if self.flatten_state_dict:
                set_element(self.original_state_dict, self.mappings[fqn], obj)
            else:
                self.state_dict[fqn] = obj

    SafeBytes.__name__ = f"SafeBytes{base.__name__}"
    return SafeBytes


def SafeLoadPlanner():  # noqa: N802 - a class built on first use (DCP imports lazily)
    from torch.distributed.checkpoint import DefaultLoadPlanner

    return safe_planner_class(DefaultLoadPlanner)()


@contextlib.contextmanager
def dcp_errors(path: Path):
    """DCP wraps a rank's exception in a CheckpointException: the first CheckpointError inside
    comes out as itself (with ``path``), anything else as a CheckpointError naming ``path``."""
    from torch.distributed.checkpoint.api import CheckpointException

    try:
        yield
    except CheckpointException as exc:
        inner = [getattr(f, "exc", f) for f in getattr(exc, "failures", {}).values()]
        for e in inner:
            if isinstance(e, CheckpointError):
                raise CheckpointError(e.message, path=e.path or str(path)) from None
        first = inner[0] if inner else exc
        raise CheckpointError(f"unreadable: {type(first).__name__}: {first}",
                              path=str(path)) from None


def read_dcp_metadata(directory: Path) -> Any:
    """The ``.metadata`` of a DCP directory, read by the restricted unpickler."""
    meta = directory / ".metadata"
    try:
        with open(meta, "rb") as fh:
            return metadata_unpickler(fh).load()
    except FileNotFoundError:
        raise CheckpointError("missing", path=str(meta)) from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"refused: {exc}; r1zero never unpickles other objects",
                              path=str(meta)) from None


def check_dcp(directory: Path) -> None:
    """Every storage entry of a DCP directory names a regular file inside it that is long
    enough, and every bytes item reads as plain data (``plain_item``): else CheckpointError
    naming the file or item. Reads the bytes items only, not the tensors."""
    from torch.distributed.checkpoint.metadata import BytesStorageMetadata

    directory = Path(directory)
    metadata = read_dcp_metadata(directory)
    kinds = getattr(metadata, "state_dict_metadata", None)
    storage = getattr(metadata, "storage_data", None)
    if not isinstance(kinds, dict) or not isinstance(storage, dict):
        raise CheckpointError("not a checkpoint index (no state or storage entries)",
                              path=str(directory / ".metadata"))
    sizes: dict[str, int] = {}
    for index, info in storage.items():
        name = getattr(info, "relative_path", None)
        offset, length = getattr(info, "offset", None), getattr(info, "length", None)
        if not (isinstance(name, str) and name and "/" not in name and "\\" not in name
                and name not in (".", "..") and isinstance(offset, int)
                and isinstance(length, int) and offset >= 0 and length >= 0):
            raise CheckpointError(f"storage entry of {index.fqn!r} points outside the checkpoint "
                                  f"or is malformed ({name!r})", path=str(directory / ".metadata"))
        f = directory / name
        if name not in sizes:
            if f.is_symlink() or not f.is_file():
                raise CheckpointError(f"shard {name} listed in .metadata is missing or not a "
                                      f"regular file", path=str(f))
            sizes[name] = f.stat().st_size
        if offset + length > sizes[name]:
            raise CheckpointError(f"shard is truncated: {sizes[name]} bytes, item "
                                  f"{index.fqn!r} needs {offset + length}", path=str(f))
        if isinstance(kinds.get(index.fqn), BytesStorageMetadata):
            if getattr(info, "transform_descriptors", None):
                raise CheckpointError(f"item {index.fqn!r} is stored transformed "
                                      f"({info.transform_descriptors}); r1zero reads plain items "
                                      f"only", path=str(f))
            with open(f, "rb") as fh:
                fh.seek(offset)
                plain_item(index.fqn, io.BytesIO(fh.read(length)), str(f))


def inside(root: Path, f: Path) -> Path:
    """``f`` when it is a regular file inside ``root`` (a symlink may point within ``root``);
    else CheckpointError naming it: a link out of a checkpoint could leak any file of the
    machine into an export."""
    target = Path(f).resolve()
    base = Path(root).resolve()
    if not target.is_relative_to(base):
        raise CheckpointError(f"{Path(f).name} is a symlink out of the checkpoint (to {target}); "
                              f"refused: r1zero copies only files inside it (copy the target in "
                              f"with `cp -L` if you trust it)", path=str(f))
    if not target.is_file():
        raise CheckpointError(f"{Path(f).name} is not a regular file; refused", path=str(f))
    return Path(f)


def run_dtype(src: Path) -> str | None:
    """The compute dtype a checkpoint's ``model/config.json`` records (``dtype`` or
    ``torch_dtype``), None when it records none or cannot be read."""
    try:
        conf = json.loads((Path(src) / "model" / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    dtype = conf.get("dtype") or conf.get("torch_dtype") if isinstance(conf, dict) else None
    return str(dtype).removeprefix("torch.") if dtype else None


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
