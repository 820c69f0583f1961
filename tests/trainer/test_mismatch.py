"""The rollout's log-probs travel to the update and the ``rollout/*`` mismatch metrics come out
of every step: ~0 with an fp32 sampler reading the fp32 actor, visibly non-zero with a bf16
rollout copy; a correction trains; engines that return no log-probs refuse it by name."""

from __future__ import annotations

import pytest

from r1zero.config.engine_keys import ROLLOUT_ENGINE_KEYS, unimplemented
from r1zero.config.load import load_config
from r1zero.engines.rollout import SamplerRolloutEngine
from r1zero.engines.vllm import VLLMRolloutEngine
from r1zero.trainer.grpo import GRPOTrainer
from r1zero.trainer.metrics import read_metrics
from tests.trainer.conftest import recipe
from tests.trainer.test_algorithms import PARITY

KEYS = ("rollout/logprob_diff_mean", "rollout/logprob_diff_max", "rollout/mismatch_kl",
        "rollout/ratio_outside")


def _run(tiny_setup, tmp_path, steps=1, rollout=None, algorithm=None, **actor):
    """``steps`` steps with the parity reward (rewards differ within a group, so it trains)."""
    (tmp_path / "parity.py").write_text(PARITY)
    cfg = load_config(None, base=recipe(
        tiny_setup, tmp_path, rewards={"parity": {"weight": 1.0}},
        plugins={"modules": [str(tmp_path / "parity.py")]},
        rollout={"n_samples_per_prompt": 4, **(rollout or {})},
        algorithm=algorithm or {}, actor={"train_iters": steps, "global_batch_size": 2, **actor}))
    trainer = GRPOTrainer.from_config(cfg)
    try:
        history = trainer.run()
    finally:
        trainer.close()
    return trainer, history


def test_mismatch_fp32_sampler_equals_fp32_actor(tiny_setup, tmp_path):
    trainer, history = _run(tiny_setup, tmp_path, steps=2)
    assert trainer.rollout.model is trainer.engine.model        # reads the actor in place
    for m in history:
        print({k: m[k] for k in KEYS})
        assert m["rollout/logprob_diff_mean"] < 1e-5, m
        assert m["rollout/logprob_diff_max"] < 1e-4 and m["rollout/ratio_outside"] == 0.0
    # in the JSONL (and so TensorBoard and the dashboard) every step
    logged = read_metrics(tmp_path / "logs" / "metrics.jsonl")
    assert all(k in r for r in logged if r["step"] > 0 for k in KEYS)


def test_mismatch_bf16_rollout_vs_fp32_actor(tiny_setup, tmp_path):
    trainer, history = _run(tiny_setup, tmp_path, rollout={"dtype": "bfloat16"},
                            ppo_epochs=2)        # off-policy: the old log-probs computed first
    assert next(trainer.rollout.model.parameters()).dtype.is_floating_point
    assert str(next(trainer.rollout.model.parameters()).dtype) == "torch.bfloat16"
    m = history[0]
    print({k: m[k] for k in KEYS})
    # bf16 weights (8 bits of mantissa) vs fp32: log-probs 10x the fp32 bound apart (the tiny
    # random model's near-uniform distributions measured 7.4e-4 mean, 2.3e-3 max)
    assert m["rollout/logprob_diff_mean"] > 1e-4 and m["rollout/mismatch_kl"] > 0


@pytest.mark.parametrize("name", ["tis_token", "mis_seq"])
def test_mismatch_correction_trains(tiny_setup, tmp_path, name):
    _, history = _run(tiny_setup, tmp_path, rollout={"dtype": "bfloat16"},
                      algorithm={"rollout_correction": name, "rollout_correction_c": 1.5})
    m = history[0]
    assert m["actor/grad_norm"] > 0
    if name == "tis_token":     # truncated ratios of a small mismatch: near 1, at most C
        assert 0.5 < m["actor/correction_weight"] <= 1.5
    else:                       # a share of kept sequences' tokens
        assert 0.0 <= m["actor/correction_weight"] <= 1.0


def test_mismatch_keys_refused_where_no_logprobs(tmp_path):
    cfg = load_config(None, ["algorithm.rollout_correction=tis_token", "rollout.dtype=bfloat16"])
    assert unimplemented(cfg, SamplerRolloutEngine, ROLLOUT_ENGINE_KEYS) == []
    problems = unimplemented(cfg, VLLMRolloutEngine, ROLLOUT_ENGINE_KEYS)
    if "algorithm.rollout_correction" in VLLMRolloutEngine.implements:
        pytest.skip("the vLLM engine returns log-probs now")
    assert any(p.startswith("algorithm.rollout_correction: 'tis_token' is not implemented by "
                            "engine 'vllm'") for p in problems)
