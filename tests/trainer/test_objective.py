"""The trainer's update is the registered objective: split into micro-batches and weighted by
share, its loss and gradient equal the objective's on the whole mini-batch at once, for every
loss aggregation (policy, KL and entropy terms all aggregated the same way)."""

from __future__ import annotations

import pytest
import torch

from r1zero.algo import LOSS_AGGS
from r1zero.config.load import load_config
from r1zero.engines.torch_engine import SeqBatch
from r1zero.trainer.grpo import GRPOTrainer
from tests.trainer.conftest import recipe


def _seqs(trainer):
    g = torch.Generator().manual_seed(0)
    prompts = [trainer.prompts[i].input_ids for i in range(3)]
    return [(p, torch.randint(5, 300, (int(torch.randint(1, 11, (1,), generator=g)),),
                              generator=g).tolist()) for p in prompts for _ in range(3)]


def _whole_batch(trainer, seqs, adv):
    """The objective on all sequences in one forward; (loss, gradient norm)."""
    eng = trainer.engine
    batch = SeqBatch([p for p, _ in seqs], [r for _, r in seqs], eng.pad_id, eng.device)
    logp, ent = eng.logprobs(eng.model, batch, trainer.cfg.rollout.temperature, with_entropy=True)
    with torch.no_grad():
        ref, _ = eng.logprobs(eng.ref, batch, trainer.cfg.rollout.temperature)
    out = trainer.algorithm.loss(logp, logp.detach(), adv, batch.response_mask, ref, ent)
    params = [p for p in eng.model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(out["loss"], params, allow_unused=True)
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(x) for x in grads
                                                 if x is not None]))
    return {k: float(v.detach()) for k, v in out.items()}, float(norm)


@pytest.mark.parametrize("agg", LOSS_AGGS)
def test_trainer_loss_equals_the_objective(tiny_setup, tmp_path, agg):
    cfg = load_config(None, base=recipe(
        tiny_setup, tmp_path, actor={"micro_batch_size": 2, "global_batch_size": 3},
        algorithm={"loss_agg": agg, "kl_coef": 0.5, "kl_penalty": "k1", "entropy_coeff": 0.01},
        rollout={"n_samples_per_prompt": 3, "max_response_length": 10}))
    trainer = GRPOTrainer.from_config(cfg)
    try:
        # the reference differs from the actor, so the KL term is not 0
        with torch.no_grad():
            for p in trainer.engine.ref.parameters():
                p.add_(0.05 * torch.randn_like(p))
        seqs = _seqs(trainer)
        adv = torch.linspace(-1.0, 1.0, len(seqs))
        want, want_norm = _whole_batch(trainer, seqs, adv)
        got = trainer.update(seqs, adv)
    finally:
        trainer.close()
    assert abs(want["kl"]) > 1e-3 and want["entropy"] > 1.0      # every term is in play
    for key in ("loss", "pg_loss", "kl", "entropy"):
        assert got[key] == pytest.approx(want[key], rel=1e-5, abs=1e-6), key
    assert got["grad_norm"] == pytest.approx(want_norm, rel=1e-5)
