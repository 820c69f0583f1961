"""The GRPO trainer end to end on a tiny random model (cpu backend, real scoring pool)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import torch

from r1zero.config.load import load_config
from r1zero.trainer.grpo import GRPOTrainer
from r1zero.trainer.metrics import read_metrics
from tests.trainer.conftest import kill_inside_step, recipe, write_recipe


def _trainer(setup, run_dir, **sections) -> GRPOTrainer:
    return GRPOTrainer.from_config(load_config(None, base=recipe(setup, run_dir, **sections)))


def _logp(trainer: GRPOTrainer, seqs):
    eng = trainer.engine
    with torch.no_grad():
        batch = trainer._batch(list(range(len(seqs))), seqs)
        return eng.logprobs(eng.model, batch, 1.0)[0], batch.response_mask


def _loss_on(trainer: GRPOTrainer, seqs, adv, logp_old) -> float:
    """Clipped policy loss of the current weights against the first policy's log-probs."""
    from r1zero.algo import aggregate_loss, ppo_clip_loss

    logp, mask = _logp(trainer, seqs)
    loss_mat, _, _ = ppo_clip_loss(logp, logp_old, adv, mask)
    return float(aggregate_loss(loss_mat, mask))


def test_two_updates_change_weights_and_lower_loss_on_fixed_batch(tiny_setup, tmp_path):
    trainer = _trainer(tiny_setup, tmp_path, algorithm={"kl_coef": 0.0})
    try:
        prompt = trainer.prompts[0].input_ids
        # four responses to one prompt; two rewarded (+1 advantage), two not (-1)
        seqs = [(prompt, [5, 6, 7, 8]), (prompt, [9, 10, 11]), (prompt, [12, 13, 14, 15]), (prompt, [16, 17])]
        adv = torch.tensor([1.0, 1.0, -1.0, -1.0])
        before = {k: v.clone() for k, v in trainer.engine.model.state_dict().items()}
        logp0, _ = _logp(trainer, seqs)
        loss0 = _loss_on(trainer, seqs, adv, logp0)     # = -mean(A) over tokens: ratio 1
        trainer.update(seqs, adv)
        trainer.update(seqs, adv)
        loss2 = _loss_on(trainer, seqs, adv, logp0)
        changed = [k for k, v in trainer.engine.model.state_dict().items() if not torch.equal(v, before[k])]
        assert changed, "no weight changed after two optimizer steps"
        assert loss2 < loss0 - 1e-3, (loss0, loss2)
    finally:
        trainer.close()


def test_run_writes_metrics_tensorboard_plots_and_loadable_checkpoint(tiny_setup, tmp_path):
    from transformers import AutoModelForCausalLM

    trainer = _trainer(tiny_setup, tmp_path, actor={"train_iters": 2})
    try:
        history = trainer.run()
    finally:
        trainer.close()
    assert len(history) == 2
    rec = read_metrics(tmp_path / "logs" / "metrics.jsonl")[-1]
    for key in ("reward/mean", "reward/format", "reward/accuracy", "reward/base_acc/format",
                "response_length/mean", "response_length/max", "response_length/clipped",
                "actor/kl", "actor/entropy", "actor/clipfrac", "actor/grad_norm", "actor/lr",
                "timing/rollout", "timing/reward", "timing/reference", "timing/update",
                "throughput/tokens_per_s_per_device", "reward/timeouts", "reward/errors"):
        assert key in rec, key
    assert rec["actor/lr"] == pytest.approx(1e-3)
    assert len(rec["data/ids"]) == 2
    plots = {p.name for p in (tmp_path / "logs" / "plots").glob("*.png")}
    assert {"reward.png", "format.png", "accuracy.png", "response_length.png", "kl.png"} <= plots
    assert list((tmp_path / "logs" / "tensorboard").glob("events.out.tfevents.*"))
    ckpt = tmp_path / "ckpt" / (tmp_path / "ckpt" / "latest").read_text()
    AutoModelForCausalLM.from_pretrained(ckpt / "model")


def _train_cmd(cfg_path, *extra):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "r1zero.cli.main", "train", str(cfg_path), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True,
                            start_new_session=True)   # its own group: scoring workers included


def _strip(rec: dict) -> dict:
    """The numbers of a record (ids are compared exactly, apart; timings vary run to run)."""
    return {k: v for k, v in rec.items()
            if not k.startswith(("timing/", "throughput/")) and k != "data/ids"}


def test_sigkill_mid_step_then_resume_matches_uninterrupted_run(tiny_setup, tmp_path):
    steps = 8
    ref_cfg = write_recipe(tmp_path / "ref.yaml", recipe(tiny_setup, tmp_path / "ref",
                                                         actor={"train_iters": steps}))
    proc = _train_cmd(ref_cfg)
    assert proc.wait(timeout=300) == 0, proc.stdout.read()
    reference = read_metrics(tmp_path / "ref" / "logs" / "metrics.jsonl")

    run = tmp_path / "killed"
    cfg = write_recipe(tmp_path / "killed.yaml", recipe(tiny_setup, run, actor={"train_iters": steps}))
    proc = _train_cmd(cfg)
    metrics = run / "logs" / "metrics.jsonl"
    killed_at = kill_inside_step(proc, metrics, timeout_s=240)   # step 2 logged: inside step 3
    assert proc.returncode == -signal.SIGKILL
    assert killed_at < steps, "the run finished before it could be killed"

    proc = _train_cmd(cfg, "--resume")
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, out
    resumed = read_metrics(metrics)
    assert [r["step"] for r in resumed] == list(range(1, steps + 1))
    ids = [i for r in resumed for i in r["data/ids"]]
    assert ids == [i for r in reference for i in r["data/ids"]]     # nothing lost or repeated
    assert len(ids) == steps * 2 == len(set(ids))   # 16 of the 24 prompts: one epoch, no repeats
    for got, want in zip(resumed, reference):
        assert _strip(got) == pytest.approx(_strip(want), rel=1e-5, abs=1e-6), got["step"]
