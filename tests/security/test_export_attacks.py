"""Issue 21 items 3 and 4: ``r1zero export`` and the FP8 -> bf16 convert copy only regular files
inside the checkpoint, a checkpoint without weights is an error, and a bfloat16 run whose fp32
masters are gone is never resumed from its bfloat16 export.

Before: a file in the checkpoint's ``model/`` linking to a secret elsewhere was copied into the
export; an export of a checkpoint with no weights exited 0 with a randomly initialised model;
a bf16 run without ``master.safetensors`` resumed from the bf16 export as if it were fp32.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from r1zero.config.load import load_config
from r1zero.host.errors import CheckpointError
from r1zero.trainer import checkpoint
from r1zero.trainer.grpo import GRPOTrainer
from tests.security.conftest import assert_user_error, main_, resume, trained  # noqa: F401 - fixture
from tests.trainer.conftest import tiny_setup  # noqa: F401 - fixture


@pytest.fixture
def run(trained, tmp_path):  # noqa: F811 - the imported fixture
    cfg, src = trained
    shutil.copytree(src / "ckpt", tmp_path / "ckpt", symlinks=True)
    cfg = {**cfg, "checkpoint": {**cfg["checkpoint"], "dir": str(tmp_path / "ckpt")},
           "logging": {**cfg["logging"], "dir": str(tmp_path / "logs")}}
    return cfg, tmp_path / "ckpt"


def test_a_symlink_out_of_the_checkpoint_is_refused_by_name(run, tmp_path, capsys):
    _, ckpt = run
    secret = tmp_path / "secret.txt"
    secret.write_text("API_KEY=hunter2", encoding="utf-8")
    step = ckpt / "step_000002"
    (step / "model" / "notes.txt").symlink_to(secret)
    out = tmp_path / "export"
    proc = main_(capsys, "export", str(step), str(out))
    assert_user_error(proc, "notes.txt", "symlink out of the checkpoint")
    assert not any(out.rglob("*")) if out.exists() else True
    assert "hunter2" not in "".join(p.read_text(errors="ignore") for p in out.rglob("*")
                                    if p.is_file()) if out.exists() else True


def test_a_symlinked_weight_file_out_of_the_checkpoint_is_refused(run, tmp_path, capsys):
    _, ckpt = run
    step = ckpt / "step_000002"
    elsewhere = tmp_path / "elsewhere.safetensors"
    for name in ("master.safetensors", "model/model.safetensors"):
        if (step / name).exists():
            shutil.move(step / name, elsewhere)
            (step / name).symlink_to(elsewhere)
            break
    proc = main_(capsys, "export", str(step), str(tmp_path / "export"))
    assert_user_error(proc, "symlink out of the checkpoint")


def test_a_link_that_stays_inside_the_checkpoint_is_fine(run, tmp_path, capsys):
    _, ckpt = run
    step = ckpt / "step_000002"
    (step / "notes.txt").write_text("run notes", encoding="utf-8")
    (step / "model" / "notes.txt").symlink_to(step / "notes.txt")
    out = tmp_path / "export"
    assert main_(capsys, "export", str(step), str(out)).returncode == 0
    assert (out / "notes.txt").read_text(encoding="utf-8") == "run notes"
    assert not (out / "notes.txt").is_symlink()


def test_a_checkpoint_without_weights_is_an_error(run, tmp_path, capsys):
    _, ckpt = run
    step = ckpt / "step_000002"
    for f in [step / "master.safetensors", *(step / "model").glob("*.safetensors")]:
        f.unlink(missing_ok=True)
    proc = main_(capsys, "export", str(step), str(tmp_path / "export"))
    assert_user_error(proc, "no weights")
    assert not (tmp_path / "export").exists()


@pytest.fixture
def bf16_run(tiny_setup, tmp_path):  # noqa: F811 - the imported fixture
    """A real 2-step bfloat16 run (its fp32 masters in master.safetensors)."""
    from tests.trainer.conftest import recipe

    cfg = recipe(tiny_setup, tmp_path, model={"dtype": "bfloat16"}, actor={"train_iters": 2},
                 checkpoint={"keep_last": 3}, logging={"plots": False, "tensorboard": False})
    trainer = GRPOTrainer.from_config(load_config(None, base=cfg))
    try:
        trainer.run()
    finally:
        trainer.close()
    return cfg, tmp_path / "ckpt"


def test_missing_fp32_masters_of_a_bf16_run_are_never_resumed_silently(bf16_run, caplog):
    cfg, ckpt = bf16_run
    step = ckpt / "step_000002"
    assert json.loads((step / "model" / "config.json").read_text())["dtype"] == "bfloat16"
    (step / "master.safetensors").unlink()
    with pytest.raises(CheckpointError, match="master.safetensors is missing"):
        checkpoint.read(step)
    assert resume(cfg, caplog) == 1 and "master.safetensors is missing" in caplog.text


def _hf_dir(root):
    from safetensors.torch import save_file

    root.mkdir()
    save_file({"w": torch.ones(2, 2, dtype=torch.bfloat16)}, str(root / "a.safetensors"))
    (root / "config.json").write_text("{}", encoding="utf-8")
    (root / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"w": "a.safetensors"}}), encoding="utf-8")
    return root


def test_convert_copies_only_files_inside(tmp_path):
    from r1zero.engines.megatron.ckpt_convert import dequantize_checkpoint

    secret = tmp_path / "secret.txt"
    secret.write_text("hunter2", encoding="utf-8")
    src = _hf_dir(tmp_path / "src")
    (src / "tokenizer.json").symlink_to(secret)
    with pytest.raises(CheckpointError, match="tokenizer.json is a symlink out"):
        dequantize_checkpoint(src, tmp_path / "dst")
    assert not (tmp_path / "dst" / "tokenizer.json").exists()
    (src / "tokenizer.json").unlink()
    (src / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"w": "../secret.txt"}}), encoding="utf-8")
    with pytest.raises(CheckpointError, match="not a file of this directory"):
        dequantize_checkpoint(src, tmp_path / "dst2")
