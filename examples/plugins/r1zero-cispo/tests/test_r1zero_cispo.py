"""Run after `pip install -e .`:  python -m pytest -q"""

import math

import pytest
import torch

from r1zero.manager import PluginHost
from r1zero_cispo import cispo_loss


@pytest.fixture
def host():
    return PluginHost().load()


def test_hook_register_algorithms_cispo(host):
    assert "cispo" in host.names("algorithms")         # collects what the hooks registered
    info = host.plugins["cispo"]
    assert info.error is None and info.distribution == "r1zero-cispo"
    assert info.registered["algorithms"] == ["cispo"]
    assert info.registered["policy_losses"] == ["cispo"]
    assert host.get("algorithms", "cispo").policy_loss == "cispo"


def test_clipped_weight_keeps_the_gradient_by_hand():
    # ratios 1.5, .5, 3.0 with A = 1 and the weight clipped to [.8, 1.2]:
    # weights 1.2, .8, 1.2 ; loss_t = -w_t · logp_t ; d/dlogp_t = -w_t (PPO would give 0, -.5, 0)
    logp = torch.tensor([[math.log(1.5), math.log(.5), math.log(3.0)]], requires_grad=True)
    loss, clipfrac, _ = cispo_loss(logp, torch.zeros(1, 3), torch.tensor([1.0]), torch.ones(1, 3),
                                   clip_ratio=0.2)
    assert torch.allclose(loss, -torch.tensor([[1.2, .8, 1.2]]) * logp.detach(), atol=1e-6)
    loss.sum().backward()
    assert torch.allclose(logp.grad, torch.tensor([[-1.2, -.8, -1.2]]), atol=1e-6)
    assert clipfrac.item() == pytest.approx(1.0)


def test_a_recipe_picks_it_by_name(host):
    from r1zero.algo.algorithm import resolve_algorithm
    from r1zero.config_load import load_config

    alg = resolve_algorithm(load_config(None, ["algorithm.name=cispo"]), host)
    assert (alg.name, alg.loss_agg, alg.clip_ratio) == ("cispo", "token-mean", 1.0)
    assert alg.policy_loss is cispo_loss
