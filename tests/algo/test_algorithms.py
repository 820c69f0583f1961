"""The built-in algorithms and their pieces, by hand: GSPO's sequence ratio, the adaptive KL
controller, DAPO's group filter and overlong penalty; and how a recipe picks them by name."""

from __future__ import annotations

import math

import pytest
import torch

from r1zero.algo.algorithm import resolve_algorithm
from r1zero.algo.filters import overlong_penalty, varied_groups
from r1zero.algo.kl import AdaptiveKLController
from r1zero.algo.loss import gspo_loss, ppo_clip_loss
from r1zero.config.load import load_config
from r1zero.host.errors import ConfigError
from r1zero.host.manager import PluginHost


@pytest.fixture(scope="module")
def host():
    return PluginHost().load()


def test_hook_register_algorithms(host):
    assert "grpo" in host.names("algorithms")          # collects what the hooks registered
    info = host.plugins["algorithms"]
    assert info.error is None and info.source == "built-in"
    assert info.registered["algorithms"] == ["grpo", "dr_grpo", "dapo", "gspo"]
    assert info.registered["advantage_estimators"] == ["group_norm", "group_mean"]
    assert info.registered["policy_losses"] == ["ppo_clip", "gspo"]
    assert info.registered["kl_controllers"] == ["fixed", "adaptive"]


def test_gspo_sequence_ratio_by_hand():
    # one sequence, token log-ratios ln 1.21 and 0: s = exp((ln 1.21 + 0) / 2) = 1.1, A = 1,
    # clip .2: inside, l_t = -1.1 each; seq-mean-token-mean loss -1.1 ;
    # d loss / d logp_t = -A · s / |y| = -.55 for both tokens (GSPO: one ratio per sequence)
    logp = torch.tensor([[math.log(1.21), 0.0]], requires_grad=True)
    loss, clipfrac, _ = gspo_loss(logp, torch.zeros(1, 2), torch.tensor([1.0]), torch.ones(1, 2),
                                  clip_ratio=0.2, clip_ratio_high=0.2)
    assert torch.allclose(loss, torch.tensor([[-1.1, -1.1]]), atol=1e-6)
    loss.mean().backward()
    assert torch.allclose(logp.grad, torch.tensor([[-.55, -.55]]), atol=1e-6)
    assert clipfrac.item() == 0.0


def test_gspo_clips_the_whole_sequence():
    # log-ratios ln 1.5 twice: s = 1.5 > 1.2 with A = 1 -> clipped, l = -1.2, no gradient;
    # PPO would clip per token too here, but at ln 2.25 and 0 (s = 1.5 again) PPO lets the
    # second token through while GSPO clips both
    logp = torch.tensor([[math.log(2.25), 0.0]], requires_grad=True)
    loss, clipfrac, _ = gspo_loss(logp, torch.zeros(1, 2), torch.tensor([1.0]), torch.ones(1, 2),
                                  clip_ratio=0.2, clip_ratio_high=0.2)
    assert torch.allclose(loss, torch.tensor([[-1.2, -1.2]])) and clipfrac.item() == 1.0
    loss.sum().backward()
    assert torch.equal(logp.grad, torch.zeros(1, 2))
    ppo, ppo_clipfrac, _ = ppo_clip_loss(logp.detach(), torch.zeros(1, 2), torch.tensor([1.0]),
                                         torch.ones(1, 2))
    assert torch.allclose(ppo, torch.tensor([[-1.2, -1.0]])) and ppo_clipfrac.item() == .5


def test_adaptive_kl_by_hand():
    ctrl = AdaptiveKLController(0.1, target=0.02, horizon=100)
    ctrl.update(0.03, n_steps=10)       # e = clip(.03/.02 - 1) = .2 (capped); x (1 + .2 · .1)
    assert ctrl.value == pytest.approx(0.1 * 1.02)
    ctrl.update(0.018, n_steps=50)      # e = .018/.02 - 1 = -.1 ; x (1 - .1 · .5) = .95
    assert ctrl.value == pytest.approx(0.1 * 1.02 * 0.95)
    with pytest.raises(ValueError, match="target > 0"):
        AdaptiveKLController(0.1, target=0.0, horizon=100)


def test_dynamic_sampling_keeps_groups_whose_rewards_differ():
    assert varied_groups([1, 1, 0, 1, 0, 0, .5, .5], [0, 0, 1, 1, 2, 2, 3, 3]) == {1}
    assert varied_groups([], []) == set()


def test_overlong_penalty_by_hand():
    # L_max 10, L_cache 4: no penalty to 6 tokens, then (6 - n) / 4, -1 past 10
    assert [overlong_penalty(n, 10, 4) for n in (6, 7, 10, 11)] == [0.0, -.25, -1.0, -1.0]
    with pytest.raises(ValueError, match="buffer"):
        overlong_penalty(5, 10, 11)


@pytest.mark.parametrize("name, adv, loss, agg, lo, hi, dynamic, masked", [
    ("grpo", "group_norm", "ppo_clip", "token-mean", .2, None, False, False),
    ("dr_grpo", "group_mean", "ppo_clip", "seq-mean-token-sum-norm", .2, None, False, False),
    ("dapo", "group_norm", "ppo_clip", "token-mean", .2, .28, True, True),
    ("gspo", "group_norm", "gspo", "seq-mean-token-mean", 3e-4, 4e-4, False, False),
])
def test_a_recipe_picks_each_algorithm_by_name(host, name, adv, loss, agg, lo, hi, dynamic, masked):
    alg = resolve_algorithm(load_config(None, [f"algorithm.name={name}"]), host)
    spec = host.get("algorithms", name)
    assert (spec.advantage, spec.policy_loss) == (adv, loss)
    assert alg.policy_loss is host.get("policy_losses", loss).fn
    assert (alg.name, alg.loss_agg, alg.clip_ratio, alg.clip_ratio_high) == (name, agg, lo, hi)
    assert (alg.dynamic_sampling, alg.overlong_mask) == (dynamic, masked)
    # a key the recipe sets wins over the algorithm's default
    mine = resolve_algorithm(load_config(None, [f"algorithm.name={name}", "algorithm.clip_ratio=.1",
                                                "algorithm.loss_agg=seq-mean-token-sum"]), host)
    assert (mine.clip_ratio, mine.loss_agg) == (.1, "seq-mean-token-sum")


def test_advantages_of_group_norm_and_group_mean(host):
    rewards, groups = torch.tensor([1., 0., 0.]), torch.tensor([4, 4, 4])
    grpo = resolve_algorithm(load_config(None), host)
    dr = resolve_algorithm(load_config(None, ["algorithm.name=dr_grpo"]), host)
    assert torch.allclose(grpo.advantages(rewards, groups), torch.tensor([1.1547, -.57735, -.57735]),
                          atol=1e-4)
    assert torch.allclose(dr.advantages(rewards, groups), torch.tensor([2 / 3, -1 / 3, -1 / 3]))


@pytest.mark.parametrize("key, value, listed", [
    ("name", "ppo", "dapo, dr_grpo, grpo, gspo"),
    ("adv_estimator", "rloo", "group_mean, group_norm"),
    ("policy_loss", "cispo2", "gspo, ppo_clip"),
    ("kl_ctrl", "pid", "adaptive, fixed"),
])
def test_an_unknown_name_lists_the_valid_ones(host, key, value, listed):
    with pytest.raises(ConfigError) as exc:
        resolve_algorithm(load_config(None, [f"algorithm.{key}={value}"]), host)
    msg = str(exc.value)       # installed plugins may add names: the built-ins are all listed
    assert f"algorithm.{key}: unknown " in msg and f"{value!r}; available: " in msg
    assert all(n in msg.split("available: ")[1] for n in listed.split(", ")), msg


def test_dual_clip_only_where_the_loss_has_one(host):
    assert resolve_algorithm(load_config(None, ["algorithm.dual_clip=3"]), host).dual_clip == 3
    with pytest.raises(ConfigError, match="algorithm.dual_clip: policy loss 'gspo' has no dual clip"):
        resolve_algorithm(load_config(None, ["algorithm.name=gspo", "algorithm.dual_clip=3"]), host)
