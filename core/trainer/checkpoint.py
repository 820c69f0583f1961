"""Checkpoints for exact resume: the engine's state (``engines.state``: HF export in
``model/``, fp32 master weights, the optimizer sharded with ``torch.distributed.checkpoint``,
schedule and loss scale), RNG states and data position, written atomically (temp dir, then
rename). Every rank of a sharded engine takes part in ``save`` and ``load``.

``trainer_state.pt`` holds only tensors, numbers, strings, lists and dicts (RNG states are
converted to plain tensors and lists), so it is read with ``torch.load(weights_only=True)``:
loading a checkpoint never unpickles arbitrary objects, and a file that holds any makes a
``CheckpointError``, not code execution. ``read`` checks a whole checkpoint before
anything is applied -- each file by its own restricted reader, then every file against the
sizes and SHA-256 sums of ``manifest.json`` written at save (``trainer.manifest``; a
flipped byte inside a tensor shard is found there); a save that fails (a full disk) is a
``CheckpointError`` naming the path and the free space, and the previous checkpoint stays
the latest; ``resume_candidates`` lists checkpoints newest first, so a damaged
latest one can be skipped for the newest intact one. Leftover ``.tmp_step_*`` directories
of killed saves are removed at the next save or resume.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.distributed.checkpoint.api import CheckpointException  # a BaseException

from r1zero.engines.state import check_engine_state
from r1zero.host.errors import CheckpointError
from r1zero.host.files import pid_alive, publish_dir
from r1zero.trainer import manifest

log = logging.getLogger(__name__)
STATE_FILE, META_FILE = "trainer_state.pt", "meta.json"


def rng_state(generator: torch.Generator) -> dict[str, Any]:
    """Every RNG the run draws from, as tensors and lists (safe for ``weights_only`` loads)."""
    version, mt, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {"python": {"version": version, "state": torch.tensor(mt, dtype=torch.int64),
                       "gauss": gauss},
            "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)),
                      "pos": int(pos), "has_gauss": int(has_gauss), "cached": float(cached)},
            "torch": torch.get_rng_state(), "sampler": generator.get_state()}


def set_rng_state(state: dict[str, Any], generator: torch.Generator) -> None:
    py, npy = state["python"], state["numpy"]
    random.setstate((py["version"], tuple(int(x) for x in py["state"].tolist()), py["gauss"]))
    np.random.set_state((npy["kind"], npy["keys"].numpy().astype(np.uint32), npy["pos"],
                         npy["has_gauss"], npy["cached"]))
    torch.set_rng_state(state["torch"])
    generator.set_state(state["sampler"])


def save(ckpt_dir: str | Path, step: int, engine: Any, tokenizer: Any, extra: dict[str, Any],
         keep_last: int = 2, dist: Any = None) -> Path | None:
    """Write ``ckpt_dir/step_<n>`` atomically and point ``latest`` at it. With ``dist`` (a
    ``trainer.dist.DataParallel``) every rank calls this (the engine state is sharded); rank 0
    alone writes the rest and returns the path, the others None."""
    main = dist is None or dist.is_main
    root = Path(ckpt_dir)
    final = root / f"step_{step:06d}"
    tmp = root / f".tmp_step_{step:06d}_{os.getpid()}"
    if main:
        root.mkdir(parents=True, exist_ok=True)
        clean_stale_tmp(root)
        shutil.rmtree(tmp, ignore_errors=True)
        (tmp / "model").mkdir(parents=True)
    if dist is not None:               # rank 0's directory, once it exists
        tmp = Path(dist.broadcast(str(tmp)))
    try:
        engine.save_state(tmp)
        if not main:
            return None
        tokenizer.save_pretrained(tmp / "model")
        torch.save(extra, tmp / STATE_FILE)
        manifest.write(tmp)
        (tmp / META_FILE).write_text(json.dumps({"step": step}))
        _fsync_dir(tmp)
    except (Exception, CheckpointException) as exc:  # noqa: BLE001 - disk full reads
        raise save_failed(exc, root, tmp, step, main) from exc  # differently in each library
    publish_dir(tmp, final)
    latest_tmp = root / ".latest.tmp"
    latest_tmp.write_text(final.name)
    os.replace(latest_tmp, root / "latest")
    for old in sorted(root.glob("step_*"))[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def save_failed(exc: BaseException, root: Path, tmp: Path, step: int,
                main: bool) -> CheckpointError:
    """The error for a save that raised ``exc`` (a full disk, mostly: torch, safetensors and DCP
    each report it their own way): names the path and the free space; rank 0 removes the
    unfinished directory, so the previous checkpoint stays the latest."""
    if main:
        shutil.rmtree(tmp, ignore_errors=True)
    try:
        free = f"{shutil.disk_usage(root).free / 2**20:.1f} MiB free"
    except OSError:
        free = "free space unknown"
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
    prev = latest(root) if main else None
    keep = f"{prev.name} stays the latest checkpoint" if prev else "no earlier checkpoint"
    return CheckpointError(f"saving step {step} failed ({type(exc).__name__}: {first}); "
                           f"{free} on that file system; {keep}", path=str(tmp))


def clean_stale_tmp(root: str | Path) -> list[Path]:
    """Remove ``.tmp_step_*_<pid>`` directories (and ``.step_*.old-<pid>-*`` copies set aside by
    ``publish_dir``) of saves whose process is gone."""
    removed = []
    for p in [*Path(root).glob(".tmp_step_*"), *Path(root).glob(".step_*.old-*")]:
        pid = p.name.rsplit("_", 1)[-1] if p.name.startswith(".tmp") else \
            p.name.rsplit(".old-", 1)[-1].split("-")[0]
        if p.is_dir() and not p.is_symlink() and pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    if removed:
        log.info("removed %d leftover temp dir(s) of killed saves under %s", len(removed), root)
    return removed


def _fsync_dir(path: Path) -> None:
    for f in path.rglob("*"):
        if f.is_file():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())


def resume_candidates(ckpt_dir: str | Path) -> list[Path]:
    """Finished checkpoints under ``ckpt_dir``, newest first (``latest``'s target leads)."""
    root = Path(ckpt_dir)
    found = sorted((p for p in root.glob("step_*") if p.is_dir()), reverse=True)
    pointer = root / "latest"
    try:
        target = root / pointer.read_text().strip() if pointer.is_file() else None
    except (OSError, UnicodeDecodeError):
        target = None
    if target is not None and target in found:
        found.remove(target)
        found.insert(0, target)
    return found


def latest(ckpt_dir: str | Path) -> Path | None:
    """The newest finished checkpoint (not checked for damage; see ``read``)."""
    done = [p for p in resume_candidates(ckpt_dir) if (p / META_FILE).exists()]
    return done[0] if done else None


def read(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(weights, trainer state with ``step``) of the checkpoint at ``path``, fully checked.

    Raises ``CheckpointError`` naming the file for anything missing, truncated or unsafe.
    """
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_dir():
        raise CheckpointError("no such checkpoint (not a directory)", path=str(path))
    step = _read_step(path / META_FILE)
    files = sorted((path / "model").glob("*.safetensors"))
    if not files:
        raise CheckpointError("no model/*.safetensors weights", path=str(path))
    weights: dict[str, torch.Tensor] = {}
    for f in files:
        try:
            weights.update(load_file(f))
        except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
            raise CheckpointError(f"unreadable weights: {type(exc).__name__}: {exc}",
                                  path=str(f)) from exc
    state = _read_state(path / STATE_FILE)
    state["step"] = step
    try:
        check_engine_state(path)
    except CheckpointError:
        raise
    except Exception as exc:  # noqa: BLE001 - a damaged engine file, whatever raised
        raise CheckpointError(f"unreadable engine state: {type(exc).__name__}: {exc}",
                              path=str(path)) from None
    if not manifest.verify(path):
        log.warning("checkpoint %s has no %s (an earlier release wrote it): its files are "
                    "read but not checksummed", path.name, manifest.MANIFEST)
    return weights, state


def _read_step(meta: Path) -> int:
    try:
        step = json.loads(meta.read_text(encoding="utf-8"))["step"]
    except FileNotFoundError:
        raise CheckpointError("missing (an unfinished save?)", path=str(meta)) from None
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"unreadable: {type(exc).__name__}: {exc}", path=str(meta)) from exc
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise CheckpointError(f"'step' must be a non-negative integer, got {step!r}", path=str(meta))
    return step


def _read_state(f: Path) -> dict[str, Any]:
    import pickle

    if not f.is_file():
        raise CheckpointError("missing", path=str(f))
    try:
        state = torch.load(f, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            "refused: the file holds objects other than tensors, numbers, strings, lists and "
            f"dicts, and r1zero never unpickles those ({first})", path=str(f)) from None
    except Exception as exc:  # noqa: BLE001 - truncated zip, empty file, bad magic ...
        raise CheckpointError(f"unreadable (truncated or not a checkpoint): "
                              f"{type(exc).__name__}: {exc}", path=str(f)) from None
    missing = [k for k in ("data", "rng") if not isinstance(state, dict) or k not in state]
    if missing:
        raise CheckpointError(f"incomplete: no {missing}", path=str(f))
    return state


def apply(path: Path, weights: dict[str, torch.Tensor], state: dict[str, Any],
          engine: Any) -> dict[str, Any]:
    """Load the checkpoint ``read`` checked into ``engine`` (weights, optimizer, schedule, loss
    scale; every rank of a sharded engine calls this); return the extra state."""
    try:
        engine.load_state(Path(path))
    except CheckpointError:
        raise
    except RuntimeError as exc:
        raise CheckpointError(str(exc), path=str(path)) from None
    return dict(state)


def load(path: str | Path, engine: Any) -> dict[str, Any]:
    """Restore weights, optimizer and scheduler into ``engine``; return the extra state."""
    weights, state = read(path)
    return apply(Path(path), weights, state, engine)


def load_for_resume(ckpt_dir: str | Path, explicit: str | None, engine: Any
                    ) -> tuple[Path, dict[str, Any]] | None:
    """What ``--resume`` restores: ``explicit`` (``checkpoint.load``) or else the newest
    intact checkpoint under ``ckpt_dir``, skipping damaged ones with a warning that names
    them. None when there is no checkpoint; ``CheckpointError`` when none is intact."""
    if explicit:
        return Path(explicit), load(explicit, engine)
    if Path(ckpt_dir).is_dir():
        clean_stale_tmp(ckpt_dir)
    damaged: list[str] = []
    for path in resume_candidates(ckpt_dir):
        try:
            weights, state = read(path)
        except CheckpointError as exc:
            damaged.append(str(exc))
            log.warning("checkpoint %s is damaged, skipping it: %s", path.name, exc)
            continue
        if damaged:
            log.warning("resuming from %s, the newest intact checkpoint (%d damaged newer one(s) "
                        "skipped)", path.name, len(damaged))
        return path, apply(path, weights, state, engine)
    if damaged:
        raise CheckpointError("no intact checkpoint to resume from: " + "; ".join(damaged),
                              path=str(ckpt_dir))
    return None
