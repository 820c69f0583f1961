"""Item 4: weights that overflow stop the run with a clear ``TrainingError``, not with an
unrelated crash later (before this check, sampling failed with an IndexError)."""

from __future__ import annotations

import shutil

import pytest

from r1zero.config.load import load_config
from r1zero.host.errors import TrainingError
from r1zero.trainer.grpo import GRPOTrainer
from tests.security.conftest import recipe


def test_overflowing_weights_stop_the_run_with_a_clear_error(tiny_setup, tmp_path):
    """Every weight is finite (so the start-up check passes), but the first MLP's projections are +-3e38:
    the first forward pass overflows to inf/nan."""
    from safetensors.torch import load_file, save_file

    model = tmp_path / "huge_model"
    shutil.copytree(tiny_setup["model"], model)
    weights = load_file(model / "model.safetensors")
    for name in sorted(weights):
        if "layers.0.mlp.up_proj" in name or "layers.0.mlp.down_proj" in name:
            weights[name] = weights[name].sign() * 3e38      # finite; the products overflow
    save_file(weights, model / "model.safetensors", metadata={"format": "pt"})
    cfg = recipe(tiny_setup, tmp_path, model={"path": str(model)}, actor={"train_iters": 2},
                 checkpoint={"save_interval": 0}, logging={"plots": False, "tensorboard": False})
    trainer = GRPOTrainer.from_config(load_config(None, base=cfg))
    try:
        with pytest.raises(TrainingError, match=r"rollout: the policy's logits hold nan/inf"):
            trainer.run()
        assert trainer.step == 1
    finally:
        trainer.close()
