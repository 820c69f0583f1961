"""Mixed precision in the single-device engine: fp32 master weights under bf16 compute, fp16
dynamic loss scaling, and the rollout copy in the compute dtype."""

from __future__ import annotations

import math

import pytest
import torch

from r1zero.config.load import load_config
from r1zero.host.errors import ConfigError
from r1zero.trainer.grpo import GRPOTrainer
from r1zero.engines.precision import LossScaler, make_scaler
from tests.trainer.conftest import recipe


def _trainer(setup, run_dir, dtype: str, **actor) -> GRPOTrainer:
    sections = {"model": {"path": str(setup["model"]), "dtype": dtype},
                "actor": {"lr": 1e-6, "clip_grad": 1e4, **actor}, "algorithm": {"kl_coef": 0.0}}
    return GRPOTrainer.from_config(load_config(None, base=recipe(setup, run_dir, **sections)))


def _one_step_changed_share(trainer: GRPOTrainer) -> tuple[float, int]:
    """Share of the weights with a nonzero gradient that one optimizer step changed."""
    prompt = trainer.prompts[0].input_ids
    seqs = [(prompt, [5, 6, 7, 8]), (prompt, [9, 10, 11]), (prompt, [12, 13]), (prompt, [14])]
    adv = torch.tensor([1.0, -1.0, 1.0, -1.0])
    model = trainer.engine.model
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    grads: dict[str, torch.Tensor] = {}
    hooks = [p.register_post_accumulate_grad_hook(
        lambda p, n=n: grads.__setitem__(n, p.grad.detach().clone()))
        for n, p in model.named_parameters()]
    try:
        trainer.update(seqs, adv)
    finally:
        for h in hooks:
            h.remove()
    live = changed = 0
    for n, p in model.named_parameters():
        nz = grads[n] != 0
        live += int(nz.sum())
        changed += int((p.detach()[nz] != before[n][nz]).sum())
    return changed / live, live


def test_bf16_compute_keeps_fp32_master_weights_and_one_step_changes_them(tiny_setup, tmp_path):
    trainer = _trainer(tiny_setup, tmp_path, "bfloat16")
    try:
        eng = trainer.engine
        assert all(p.dtype == torch.float32 for p in eng.model.parameters())
        assert eng.compute_dtype == torch.bfloat16 and not eng.weights_in_place
        # the sampler reads its own bf16 copy, equal to the master weights rounded
        roll = trainer.rollout.model
        assert roll is not eng.model and roll.dtype == torch.bfloat16
        share, live = _one_step_changed_share(trainer)
        assert live > 10_000
        assert share >= 0.99, share
        assert all(v.dtype == torch.float32 for s in eng.optimizer.state.values()
                   for v in s.values() if v.dim())
        # after the step (train_step syncs), the rollout copy is the new weights rounded
        trainer.rollout.sync_weights()
        w = eng.model.model.layers[0].mlp.up_proj.weight
        assert torch.equal(roll.model.layers[0].mlp.up_proj.weight, w.detach().to(torch.bfloat16))
    finally:
        trainer.close()


def test_adamw_stepping_bf16_weights_directly_loses_most_updates(tiny_setup):
    """The failure mixed precision fixes, measured on the same model: AdamW on bf16 weights."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_setup["model"], dtype=torch.bfloat16)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6)
    before = [p.detach().clone() for p in model.parameters()]
    ids = torch.arange(5, 25).unsqueeze(0)
    model(input_ids=ids, labels=ids).loss.backward()
    live = [(p.grad != 0) for p in model.parameters()]
    opt.step()
    changed = sum(int((p.detach()[m] != b[m]).sum()) for p, b, m in zip(model.parameters(), before, live))
    share = changed / sum(int(m.sum()) for m in live)
    assert share < 0.5, share          # measured ~0.02-0.05 on this model


def test_fp16_scales_the_loss_and_steps_like_fp32(tiny_setup, tmp_path):
    trainer = _trainer(tiny_setup, tmp_path, "float16", initial_loss_scale=1024.0)
    try:
        assert trainer.engine.scaler.enabled and trainer.engine.scaler.scale == 1024.0
        share, _ = _one_step_changed_share(trainer)
        assert share >= 0.99
        assert trainer.engine.scaler.skipped == 0
    finally:
        trainer.close()


def test_loss_scaler_skips_nonfinite_steps_and_grows_after_good_ones():
    s = LossScaler(True, initial=8.0, growth_interval=2)
    assert float(s.scale_loss(torch.tensor(0.5))) == 4.0            # 0.5 * 8
    g = torch.tensor([8.0, -16.0])
    s.unscale_([g])
    assert g.tolist() == [1.0, -2.0]                                # / 8
    assert s.update(float("inf")) is False and s.scale == 4.0       # skip, halve
    assert s.update(1.0) and s.update(1.0) and s.scale == 8.0       # 2 good steps: double
    s.load_state_dict(LossScaler(True, 2.0).state_dict())
    assert s.scale == 2.0 and s.skipped == 0
    off = LossScaler(False, None)
    assert off.update(math.nan) and off.scale == 1.0                # bf16/fp32: never skips


def test_initial_loss_scale_with_bf16_is_accepted_and_has_no_effect(caplog):
    """As in Megatron, whose bf16 path builds no loss scaler: one note, an inert scaler."""
    cfg = load_config(None, ["model.dtype=bfloat16", "actor.initial_loss_scale=4096"])
    with caplog.at_level("WARNING", logger="r1zero.engines.precision"):
        scaler = make_scaler(cfg)
    assert not scaler.enabled and scaler.scale == 1.0
    assert float(scaler.scale_loss(torch.tensor(3.0))) == 3.0
    notes = [r.getMessage() for r in caplog.records]
    assert notes == ["note: actor.initial_loss_scale 4096 has no effect with model.dtype bfloat16 "
                     "(no loss scaling outside float16, as in Megatron's bf16 path)"]
    assert make_scaler(load_config(None, ["model.dtype=float16",
                                          "actor.initial_loss_scale=4096"])).scale == 4096.0
    with pytest.raises(ConfigError, match="actor.initial_loss_scale: must be > 0"):
        load_config(None, ["model.dtype=float16", "actor.initial_loss_scale=0"])
