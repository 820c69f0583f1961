"""Checkpoints for exact resume: model (safetensors, loadable by transformers), optimizer,
scheduler, RNG states and data position, written atomically (temp dir, then rename)."""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch


def rng_state(generator: torch.Generator) -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(),
            "torch": torch.get_rng_state(), "sampler": generator.get_state()}


def set_rng_state(state: dict[str, Any], generator: torch.Generator) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    generator.set_state(state["sampler"])


def save(ckpt_dir: str | Path, step: int, engine: Any, tokenizer: Any, extra: dict[str, Any],
         keep_last: int = 2) -> Path:
    """Write ``ckpt_dir/step_<n>`` atomically and point ``latest`` at it."""
    root = Path(ckpt_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:06d}"
    tmp = root / f".tmp_step_{step:06d}_{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    engine.model.save_pretrained(tmp / "model", safe_serialization=True)
    tokenizer.save_pretrained(tmp / "model")
    torch.save({"optimizer": engine.optimizer.state_dict(),
                "scheduler": engine.scheduler.state_dict(), **extra}, tmp / "trainer_state.pt")
    (tmp / "meta.json").write_text(json.dumps({"step": step}))
    _fsync_dir(tmp)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    latest_tmp = root / ".latest.tmp"
    latest_tmp.write_text(final.name)
    os.replace(latest_tmp, root / "latest")
    for old in sorted(root.glob("step_*"))[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _fsync_dir(path: Path) -> None:
    for f in path.rglob("*"):
        if f.is_file():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())


def latest(ckpt_dir: str | Path) -> Path | None:
    root = Path(ckpt_dir)
    pointer = root / "latest"
    if pointer.exists():
        path = root / pointer.read_text().strip()
        if (path / "meta.json").exists():
            return path
    done = sorted(p for p in root.glob("step_*") if (p / "meta.json").exists())
    return done[-1] if done else None


def load(path: Path, engine: Any) -> dict[str, Any]:
    """Restore weights, optimizer and scheduler into ``engine``; return the extra state."""
    from safetensors.torch import load_file

    weights: dict[str, torch.Tensor] = {}
    for f in sorted((path / "model").glob("*.safetensors")):
        weights.update(load_file(f))
    missing, unexpected = engine.model.load_state_dict(weights, strict=False)
    tied = {k for k in missing if "lm_head" in k}
    if set(missing) - tied or unexpected:
        raise RuntimeError(f"{path}: checkpoint does not match the model "
                           f"(missing {sorted(set(missing) - tied)[:5]}, unexpected {unexpected[:5]})")
    state = torch.load(path / "trainer_state.pt", weights_only=False)
    engine.optimizer.load_state_dict(state.pop("optimizer"))
    engine.scheduler.load_state_dict(state.pop("scheduler"))
    state["step"] = json.loads((path / "meta.json").read_text())["step"]
    return state
