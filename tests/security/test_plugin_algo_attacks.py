"""Issue 21 items 5 and 8: an algorithm plugin's pieces are checked where they enter the
trainer, and a name collision with a built-in algorithm suggests an option that exists.

Before: an advantage estimator returning 2n values, or a policy loss returning a scalar, was
accepted; an estimator that raised gave a traceback that did not name the plugin; the
collision message suggested ``algorithms.plugin:``, which no recipe has.
"""

from __future__ import annotations

import textwrap

import pytest
import torch

from r1zero.algo.algorithm import resolve_algorithm
from r1zero.config.load import load_config
from r1zero.host.errors import ConfigError, PluginError
from r1zero.host.manager import PluginHost

PLUGIN = textwrap.dedent('''
    import torch
    from r1zero.algo.algorithm import AdvantageEstimator, AlgorithmSpec, PolicyLoss
    from r1zero.algo.loss import ppo_clip_loss
    from r1zero.host.hookspecs import hookimpl

    def twice(rewards, groups, section):          # 2n values for n rewards
        return torch.cat([rewards, rewards])

    def nan(rewards, groups, section):
        return rewards * float("nan")

    def per_token(rewards, groups, section):      # (n, T): allowed
        return rewards[:, None].expand(-1, 3).clone()

    def boom(rewards, groups, section):
        raise KeyError("group_sizes")

    def ints(rewards, groups, section):
        return groups

    def scalar_loss(logp, logp_old, advantages, mask, **kw):
        pg, clipfrac, kl = ppo_clip_loss(logp, logp_old, advantages, mask, **kw)
        return pg.mean(), clipfrac, kl

    def raising_loss(logp, logp_old, advantages, mask, **kw):
        raise RuntimeError("bad loss\\nsecond line")

    @hookimpl
    def register_algorithms(register):
        for name, fn in [("twice", twice), ("nan", nan), ("per_token", per_token),
                         ("boom", boom), ("ints", ints)]:
            register(AdvantageEstimator(name, fn))
        register(PolicyLoss("scalar_loss", scalar_loss))
        register(PolicyLoss("raising_loss", raising_loss))
''')
COLLIDES = textwrap.dedent('''
    from r1zero.algo.algorithm import AlgorithmSpec
    from r1zero.host.hookspecs import hookimpl

    @hookimpl
    def register_algorithms(register):
        register(AlgorithmSpec("grpo", advantage="group_norm", policy_loss="ppo_clip"))
''')


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    path = tmp_path_factory.mktemp("algo") / "my_algo.py"
    path.write_text(PLUGIN, encoding="utf-8")
    return PluginHost([str(path)]).load()


def algorithm(host, *overrides):
    return resolve_algorithm(load_config(None, list(overrides)), host)


REWARDS, GROUPS = torch.tensor([1.0, 0.0, 1.0, 0.0]), torch.tensor([0, 0, 1, 1])


@pytest.mark.parametrize("name,fragments", [
    ("twice", ["returned (8,)", "(n,) or (n, T) with n = 4"]),
    ("nan", ["non-finite advantages", "4 of 4"]),
    ("boom", ["raised KeyError", "group_sizes"]),
    ("ints", ["float tensor"]),
])
def test_bad_advantages_are_named_with_the_plugin(host, name, fragments):
    alg = algorithm(host, f"algorithm.adv_estimator={name}")
    with pytest.raises(PluginError) as err:
        alg.advantages(REWARDS, GROUPS)
    msg = str(err.value)
    assert f"advantage estimator '{name}'" in msg and "my_algo" in msg and "\n" not in msg
    for frag in fragments:
        assert frag in msg, msg


def test_per_token_advantages_pass(host):
    out = algorithm(host, "algorithm.adv_estimator=per_token").advantages(REWARDS, GROUPS)
    assert out.shape == (4, 3)


@pytest.mark.parametrize("name,fragment", [("scalar_loss", "returned ()"),
                                           ("raising_loss", "raised RuntimeError: bad loss")])
def test_bad_policy_losses_are_named_with_the_plugin(host, name, fragment):
    alg = algorithm(host, f"algorithm.policy_loss={name}")
    logp = torch.zeros(4, 3)
    with pytest.raises(PluginError) as err:
        alg.loss(logp, logp, torch.ones(4), torch.ones(4, 3))
    msg = str(err.value)
    assert f"policy loss '{name}'" in msg and "my_algo" in msg and fragment in msg, msg
    assert "\n" not in msg


def test_the_built_in_pieces_pass_their_own_checks():
    alg = algorithm(PluginHost().load())
    adv = alg.advantages(REWARDS, GROUPS)
    logp = torch.zeros(4, 3)
    assert torch.isfinite(alg.loss(logp, logp, adv, torch.ones(4, 3))["loss"])


def test_collision_with_a_built_in_algorithm_suggests_a_real_key(tmp_path):
    path = tmp_path / "collides.py"
    path.write_text(COLLIDES, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        algorithm(PluginHost([str(path)]).load())
    msg = str(err.value)
    assert "registered by both" in msg and "algorithms.plugin" not in msg
    assert f"plugins.disable: [{path}]" in msg, msg
    load_config(None, [f"plugins.disable=[{path}]"])       # the key it names exists
