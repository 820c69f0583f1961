"""One training step of each built-in algorithm, picked by name in a recipe, on the tiny model
with a local reward plugin whose rewards differ within a group (so every group trains)."""

from __future__ import annotations

import textwrap

import pytest

from r1zero.config.load import load_config
from r1zero.trainer.grpo import GRPOTrainer
from tests.trainer.conftest import recipe

PARITY = textwrap.dedent('''
    from r1zero.hookspecs import hookimpl


    class Parity:
        """1 for a response of an even number of characters, else 0."""
        name = "parity"
        components = ()
        in_process = True
        in_process_reason = "one len() call"

        def score(self, response, ground_truth, extra):
            return {"reward": float(len(response) % 2 == 0)}


    @hookimpl
    def register_rewards(register):
        register(Parity())
''')


def _step(tiny_setup, tmp_path, **algorithm):
    (tmp_path / "parity.py").write_text(PARITY)
    cfg = load_config(None, base=recipe(
        tiny_setup, tmp_path, algorithm=algorithm, rewards={"parity": {"weight": 1.0}},
        plugins={"modules": [str(tmp_path / "parity.py")]},
        actor={"train_iters": 1, "global_batch_size": 2}, rollout={"n_samples_per_prompt": 4}))
    trainer = GRPOTrainer.from_config(cfg)
    try:
        return trainer, trainer.train_step()
    finally:
        trainer.close()


@pytest.mark.parametrize("name, extra", [("grpo", {}), ("dr_grpo", {}), ("gspo", {}),
                                         ("dapo", {"overlong_mask": False})])
def test_one_step_of_each_algorithm(tiny_setup, tmp_path, name, extra):
    trainer, m = _step(tiny_setup, tmp_path, name=name, **extra)
    assert trainer.algorithm.name == name
    assert m["actor/grad_norm"] > 0 and m["actor/kl_coef"] == pytest.approx(0.001)
    if name == "dapo":      # dynamic sampling refilled the batch with groups whose rewards differ
        assert m["algorithm/groups_kept"] == 2 and 0 <= m["algorithm/resample_rounds"] <= 3


def test_dapo_masks_truncated_responses(tiny_setup, tmp_path):
    trainer, m = _step(tiny_setup, tmp_path, name="dapo")
    assert trainer.algorithm.overlong_mask
    # the 8 kept samples: the truncated ones are masked, the rest trained on
    assert m["algorithm/overlong_masked"] + m["algorithm/trained_samples"] == 8
    assert ("actor/grad_norm" in m) == (m["algorithm/trained_samples"] > 0)


def test_adaptive_kl_moves_the_coefficient(tiny_setup, tmp_path):
    trainer, m = _step(tiny_setup, tmp_path, kl_ctrl="adaptive", kl_coef=0.1, kl_target=0.05,
                       kl_horizon=80)
    # step 1 trains the reference's own weights: KL 0, below the target -> e = clip(0/.05 - 1)
    # = -0.2; 8 samples over a horizon of 80 -> beta x (1 - 0.2 · 0.1) = x 0.98
    assert m["actor/kl"] == 0.0
    assert m["actor/kl_coef"] == pytest.approx(0.1 * 0.98)
