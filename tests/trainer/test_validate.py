"""Validation during training on held-out problems: when it runs, what it logs, and that it
leaves the training run itself unchanged."""

from __future__ import annotations

import json

import pytest

from r1zero.config.load import load_config
from r1zero.host.errors import ConfigError
from r1zero.trainer.grpo import GRPOTrainer
from r1zero.trainer.metrics import read_metrics
from tests.trainer.conftest import recipe


@pytest.fixture(scope="module")
def held_out(tmp_path_factory):
    from r1zero.demo.arith import demo_records

    f = tmp_path_factory.mktemp("val") / "held_out.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in demo_records(5, seed=99)))
    return f


def _run(setup, run_dir, **sections):
    trainer = GRPOTrainer.from_config(load_config(None, base=recipe(setup, run_dir, **sections)))
    try:
        return trainer, trainer.run()
    finally:
        trainer.close()


def test_validation_at_step_0_interval_and_end_in_every_sink(tiny_setup, held_out, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    trainer, _ = _run(tiny_setup, tmp_path / "v", data={"val_input": str(held_out)},
                      logging={"val_interval": 3, "log_interval": 2, "dir": str(tmp_path / "v/logs"),
                               "progress": False, "tensorboard": True},
                      rollout={"val_n": 3}, actor={"train_iters": 4})
    records = read_metrics(tmp_path / "v/logs/metrics.jsonl")
    val_steps = [r["step"] for r in records if "val/accuracy" in r]
    assert val_steps == [0, 3, 4]                       # step 0, every 3, and the last
    assert [r["step"] for r in records] == [0, 2, 3, 4]   # log_interval 2 plus validation steps
    last = records[-1]
    assert last["val/n_problems"] == 5 and last["val/pass@3"] >= last["val/mean@3"]
    assert 0.0 <= last["val/accuracy"] <= 1.0 and "reward/mean" in last
    tb = EventAccumulator(str(tmp_path / "v/logs/tensorboard"))
    tb.Reload()
    assert [e.step for e in tb.Scalars("val/accuracy")] == [0, 3, 4]
    plots = tmp_path / "v/logs/plots"
    assert (plots / "val_accuracy.png").exists() and (plots / "dashboard.png").exists()
    assert len(trainer.validation.first.greedy) == 5


def test_validation_does_not_change_the_training_run(tiny_setup, held_out, tmp_path):
    _, plain = _run(tiny_setup, tmp_path / "a", actor={"train_iters": 2})
    _, validated = _run(tiny_setup, tmp_path / "b", actor={"train_iters": 2},
                        data={"val_input": str(held_out)}, logging={"val_interval": 1})
    for p, v in zip(plain, validated):
        assert p["reward/mean"] == v["reward/mean"] and p["actor/pg_loss"] == v["actor/pg_loss"]
        assert p["response_length/mean"] == v["response_length/mean"]


def test_validation_keys_are_checked_before_step_one(tiny_setup, tmp_path):
    with pytest.raises(ConfigError, match="logging.val_interval 5 needs data.val_input"):
        load_config(None, base=recipe(tiny_setup, tmp_path, logging={"val_interval": 5}))
    with pytest.raises(ConfigError, match="rollout"):
        load_config(None, base=recipe(tiny_setup, tmp_path, rollout={"val_n": 0}))
    with pytest.raises(ConfigError, match="logging"):
        load_config(None, base=recipe(tiny_setup, tmp_path, logging={"val_interval": -1}))
