"""Train/rollout mismatch by hand: the ``rollout/*`` metric sums, the four corrections (TIS and
MIS, token and sequence level), their equality with verl's rollout_corr formulas re-derived
here in numpy, and how a recipe picks a correction. Names carry "mismatch" so that
``pytest -k "mismatch or replay"`` selects them."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from r1zero.algo.algorithm import resolve_algorithm
from r1zero.algo.loss import objective
from r1zero.algo.rollout_corr import (add_sums, mis_seq, mis_token, mismatch_metrics,
                                      mismatch_sums, tis_seq, tis_token)
from r1zero.config.load import load_config
from r1zero.host.errors import ConfigError
from r1zero.host.manager import PluginHost

# d = logp_old - logp_rollout: row 0 ratios 1, 3, 1/4; row 1 ratios 1.5, 1.8, (padding)
D = torch.tensor([[0.0, math.log(3), -math.log(4)], [math.log(1.5), math.log(1.8), 5.0]])
MASK = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
OLD = torch.tensor([[-1.0, -2.0, -0.5], [-0.3, -1.2, -0.7]])
ROLLOUT = OLD - D


@pytest.fixture(scope="module")
def host():
    return PluginHost().load()


def test_mismatch_sums_by_hand():
    s = mismatch_sums(OLD, ROLLOUT, MASK)
    # |d| = 0, ln 3, ln 4, ln 1.5, ln 1.8 (the padded 5.0 ignored): sum ln(3·4·1.5·1.8) = ln 32.4
    assert s["tokens"] == 5 and s["abs_sum"] == pytest.approx(math.log(32.4))
    assert s["abs_max"] == pytest.approx(math.log(4))
    # k3 = r - 1 - ln r: 0 + (2 - ln 3) + (-.75 + ln 4) + (.5 - ln 1.5) + (.8 - ln 1.8)
    k3 = 2 - math.log(3) - .75 + math.log(4) + .5 - math.log(1.5) + .8 - math.log(1.8)
    assert s["k3_sum"] == pytest.approx(k3)
    assert s["outside"] == 2            # ratios 3 and 1/4 leave [0.5, 2]
    m = mismatch_metrics(add_sums({}, s))
    assert m == pytest.approx({"rollout/logprob_diff_mean": math.log(32.4) / 5,
                               "rollout/logprob_diff_max": math.log(4),
                               "rollout/mismatch_kl": k3 / 5, "rollout/ratio_outside": 0.4})
    # two micro-batches add up: sums doubled, the max kept, the means unchanged
    assert mismatch_metrics(add_sums(s, s)) == pytest.approx(m)


def test_mismatch_sums_of_equal_logprobs_are_zero():
    s = mismatch_sums(OLD, OLD.clone(), MASK)
    assert (s["abs_sum"], s["abs_max"], s["k3_sum"], s["outside"]) == (0, 0, 0, 0)
    assert mismatch_sums(OLD, ROLLOUT, torch.zeros(2, 3))["abs_max"] == 0.0


def test_mismatch_corrections_by_hand():
    # token TIS, C = 2: min(r, 2) -> 1, 2 (3 truncated), .25 | 1.5, 1.8, 0 (padding)
    assert torch.allclose(tis_token(OLD, ROLLOUT, MASK, 2.0),
                          torch.tensor([[1.0, 2.0, .25], [1.5, 1.8, 0.0]]))
    # sequence TIS: row 0 ratio 1 · 3 · 1/4 = .75; row 1 1.5 · 1.8 = 2.7 -> truncated to 2
    assert torch.allclose(tis_seq(OLD, ROLLOUT, MASK, 2.0),
                          torch.tensor([[.75, .75, .75], [2.0, 2.0, 0.0]]))
    # token MIS: keep ratios in [1/2, 2]: 3 and 1/4 dropped
    assert torch.equal(mis_token(OLD, ROLLOUT, MASK, 2.0),
                       torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0]]))
    # sequence MIS: .75 kept, 2.7 dropped; with C = 3 both kept
    assert torch.equal(mis_seq(OLD, ROLLOUT, MASK, 2.0),
                       torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]))
    assert torch.equal(mis_seq(OLD, ROLLOUT, MASK, 3.0), MASK)


def _verl_weights(old, rollout, mask, level, c):
    """verl's rollout_corr IS weights as its docs/algo/rollout_corr.md states them, re-derived
    in numpy: log-ratio old - rollout clamped to ±20; token: exp of it; sequence: exp of its
    masked sum, broadcast; times the mask, then truncated at C."""
    lr = old - rollout
    if level == "sequence":
        lr = np.broadcast_to((lr * mask).sum(-1, keepdims=True), lr.shape)
    return np.minimum(np.exp(np.clip(lr, -20, 20)) * mask, c)


def _verl_rejection(old, rollout, mask, level, c):
    """verl's rejection (rollout_rs) mask: mask · [1/C <= weight <= C], weight as above but
    untruncated."""
    lr = old - rollout
    if level == "sequence":
        lr = np.broadcast_to((lr * mask).sum(-1, keepdims=True), lr.shape)
    w = np.exp(np.clip(lr, -20, 20))
    return mask * ((w >= 1 / c) & (w <= c))


@pytest.mark.parametrize("c", [1.5, 2.0, 5.0])
def test_mismatch_corrections_equal_verl_formulas(c):
    g = np.random.default_rng(7)
    old = g.normal(-1.5, 1.0, (6, 9))
    rollout = old + g.normal(0, 0.4, (6, 9))
    mask = (np.arange(9)[None] < g.integers(1, 10, (6, 1))).astype(np.float64)
    t = [torch.tensor(x) for x in (old, rollout, mask)]
    for ours, level in ((tis_token, "token"), (tis_seq, "sequence")):
        np.testing.assert_allclose(ours(*t, c).numpy(), _verl_weights(old, rollout, mask, level, c),
                                   rtol=1e-12)
    for ours, level in ((mis_token, "token"), (mis_seq, "sequence")):
        np.testing.assert_array_equal(ours(*t, c).numpy(),
                                      _verl_rejection(old, rollout, mask, level, c))


def test_mismatch_weight_scales_the_policy_term_only():
    # logp = logp_old: ratio 1, ppo pg = -A = -1 per token; weight .5 on the 2 tokens of row 0,
    # 0 on row 1's: token-mean pg = (-.5 - .5 + 0 + 0) / 4 = -.25; KL to ref (k3 of 0) stays 0
    logp = torch.zeros(2, 2, requires_grad=True)
    w = torch.tensor([[.5, .5], [0.0, 0.0]])
    out = objective(logp, logp.detach(), torch.ones(2), torch.ones(2, 2), pg_weight=w)
    assert out["pg_loss"].item() == pytest.approx(-.25)
    out["loss"].backward()
    # d/dlogp of -A·ratio·w / 4 = -w / 4
    assert torch.allclose(logp.grad, -w / 4)


def test_mismatch_correction_is_registered_and_picked(host):
    assert "tis_token" in host.names("rollout_corrections")     # collects the hooks
    info = host.plugins["algorithms"]
    assert info.registered["rollout_corrections"] == ["tis_token", "tis_seq", "mis_token",
                                                      "mis_seq"]
    assert resolve_algorithm(load_config(None), host).correction is None     # off by default
    alg = resolve_algorithm(load_config(None, ["algorithm.rollout_correction=tis_seq",
                                               "algorithm.rollout_correction_c=3"]), host)
    assert alg.correction is tis_seq and alg.correction_c == 3.0
    out = alg.loss(OLD, OLD, torch.ones(2), MASK, logp_rollout=ROLLOUT)
    # row weights min(.75, 3) = .75 and min(2.7, 3) = 2.7 over 3 + 2 tokens
    assert out["correction_weight"].item() == pytest.approx((3 * .75 + 2 * 2.7) / 5)
    with pytest.raises(ValueError, match="logp_rollout"):
        alg.loss(OLD, OLD, torch.ones(2), MASK)
    with pytest.raises(ConfigError, match="algorithm.rollout_correction.*tis_tokn"):
        resolve_algorithm(load_config(None, ["algorithm.rollout_correction=tis_tokn"]), host)
