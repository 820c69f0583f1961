"""Items 1, 6 and 8: a checkpoint never runs code; a damaged one is skipped for the newest
intact one; leftovers of killed saves are removed."""

from __future__ import annotations

import json
import os
import pickle
import random

import numpy as np
import pytest
import torch

from r1zero.config.load import load_config
from r1zero.host.errors import CheckpointError
from r1zero.trainer import checkpoint
from r1zero.trainer.grpo import GRPOTrainer
from tests.security.conftest import assert_user_error, dead_pid, main_, resume, write_recipe
from tests.security.payload import Payload


def _plant_payload(step_dir, marker):
    state = torch.load(step_dir / "trainer_state.pt", weights_only=True)
    state["data"] = Payload(marker)
    torch.save(state, step_dir / "trainer_state.pt")


def test_saved_state_loads_with_weights_only(run):
    _, ckpt = run
    state = torch.load(ckpt / "step_000002" / "trainer_state.pt", weights_only=True)
    assert {"rng", "data"} <= set(state)
    engine = torch.load(ckpt / "step_000002" / "engine.pt", weights_only=True)
    assert {"scheduler", "scaler"} <= set(engine)


def test_malicious_optimizer_metadata_never_executes(run, tmp_path):
    """The optimizer's torch.distributed.checkpoint metadata is a pickle: read restricted."""
    _, ckpt = run
    marker = tmp_path / "pwned"
    meta = ckpt / "step_000002" / "optim" / ".metadata"
    meta.write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(CheckpointError, match="never unpickles") as err:
        checkpoint.read(ckpt / "step_000002")
    assert ".metadata" in str(err.value)
    assert not marker.exists()


def test_rng_state_round_trips_through_a_weights_only_load(tmp_path):
    gen = torch.Generator().manual_seed(5)
    random.gauss(0, 1)       # a cached gaussian in python's state
    torch.save(checkpoint.rng_state(gen), tmp_path / "rng.pt")
    want = (random.random(), np.random.rand(), torch.rand(1).item(), torch.rand(1, generator=gen).item())
    checkpoint.set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True), gen)
    got = (random.random(), np.random.rand(), torch.rand(1).item(), torch.rand(1, generator=gen).item())
    assert got == want


def test_malicious_trainer_state_never_executes(run, tmp_path):
    _, ckpt = run
    marker = tmp_path / "pwned"
    _plant_payload(ckpt / "step_000002", marker)
    with pytest.raises(CheckpointError, match="never unpickles") as err:
        checkpoint.read(ckpt / "step_000002")
    assert "trainer_state.pt" in str(err.value)
    assert not marker.exists()


def test_malicious_checkpoint_load_via_cli_is_a_clear_error(run, tmp_path, capsys):
    cfg, ckpt = run
    marker = tmp_path / "pwned"
    _plant_payload(ckpt / "step_000002", marker)
    path = write_recipe(tmp_path / "r.yaml", cfg)
    proc = main_(capsys, "train", str(path), "--resume", f"checkpoint.load={ckpt / 'step_000002'}")
    assert_user_error(proc, "trainer_state.pt", "never unpickles")
    assert not marker.exists()


@pytest.mark.parametrize("damage", ["truncated_weights", "truncated_state", "empty_state",
                                    "garbage_meta", "malicious_state"])
def test_resume_skips_a_damaged_latest_checkpoint(run, tmp_path, damage, caplog):
    cfg, ckpt = run
    newest = ckpt / "step_000002"
    if damage == "truncated_weights":
        f = newest / "model" / "model.safetensors"
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    elif damage == "truncated_state":
        f = newest / "trainer_state.pt"
        f.write_bytes(f.read_bytes()[:200])
    elif damage == "empty_state":
        (newest / "trainer_state.pt").write_bytes(b"")
    elif damage == "garbage_meta":
        (newest / "meta.json").write_text("{not json")
    else:
        _plant_payload(newest, tmp_path / "pwned")
    assert resume(cfg, caplog) == 1
    assert "step_000002 is damaged" in caplog.text and "resuming from step_000001" in caplog.text
    assert not (tmp_path / "pwned").exists()


def test_resume_fails_clearly_when_no_checkpoint_is_intact(run, tmp_path, capsys):
    cfg, ckpt = run
    for step in ckpt.glob("step_*"):
        (step / "trainer_state.pt").write_bytes(b"")
    proc = main_(capsys, "train", str(write_recipe(tmp_path / "r.yaml", cfg)), "--resume")
    assert_user_error(proc, "no intact checkpoint", "step_000002", "step_000001")


def test_checkpoint_load_of_a_missing_path_says_no_such_checkpoint(run, tmp_path, capsys):
    cfg, _ = run
    proc = main_(capsys, "train", str(write_recipe(tmp_path / "r.yaml", cfg)), "--resume",
               "checkpoint.load=/nonexistent")
    assert_user_error(proc, "/nonexistent", "no such checkpoint")


def test_killed_save_leftovers_are_removed_at_resume_and_save(run, tmp_path):
    cfg, ckpt = run
    stale = ckpt / f".tmp_step_000003_{dead_pid()}"
    (stale / "model").mkdir(parents=True)
    ours = ckpt / f".tmp_step_000004_{os.getpid()}"      # a live process's save stays
    ours.mkdir()
    trainer = GRPOTrainer.from_config(load_config(None, base=cfg), resume=True)
    trainer.close()
    assert not stale.exists() and ours.exists()
    stale.mkdir()
    checkpoint.save(ckpt, 3, trainer.engine, trainer.tokenizer, {"step": 3})
    assert not stale.exists() and (ckpt / "step_000003" / "meta.json").exists()
    assert json.loads((ckpt / "step_000003" / "meta.json").read_text()) == {"step": 3}
