import math

import pytest
import torch

from r1zero.algo import kl_penalty

LOGP = torch.tensor([-1.0, -2.0])
REF = torch.tensor([-1.5, -1.0])  # Δ = logp - ref = .5, -1


def test_k1_abs_k2():
    assert torch.allclose(kl_penalty(LOGP, REF, "k1"), torch.tensor([.5, -1.]))
    assert torch.allclose(kl_penalty(LOGP, REF, "abs"), torch.tensor([.5, 1.]))
    # ½Δ²: ½·.25 = .125, ½·1 = .5
    assert torch.allclose(kl_penalty(LOGP, REF, "k2"), torch.tensor([.125, .5]))


def test_k3_by_hand():
    # d = ref - logp = -.5, 1 ; exp(-.5) + .5 - 1 = .60653 - .5 = .10653 ; e - 1 - 1 = .71828
    assert torch.allclose(kl_penalty(LOGP, REF, "k3"), torch.tensor([.10653, .71828]), atol=1e-5)


def test_k3_is_default_and_aliases_agree():
    assert torch.equal(kl_penalty(LOGP, REF), kl_penalty(LOGP, REF, "k3"))
    for a, b in (("k1", "kl"), ("k2", "mse"), ("k3", "low_var_kl")):
        assert torch.equal(kl_penalty(LOGP, REF, a), kl_penalty(LOGP, REF, b))


def test_k3_clamps():
    # d = -30 -> clamped -20: exp(-20) + 20 - 1 = 19 -> clamped 10 ; d = 30 -> exp(20) - 21 -> 10
    got = kl_penalty(torch.tensor([0., -30.]), torch.tensor([-30., 0.]), "k3")
    assert torch.equal(got, torch.tensor([10., 10.]))
    assert torch.isfinite(kl_penalty(torch.tensor([-1e4]), torch.tensor([0.]), "k3")).all()


def test_estimators_are_unbiased_under_exact_expectation():
    # E_{x~p}[k1] = E_p[log p/q] = KL(p||q); E_p[k3] = E_p[q/p - log(q/p) - 1] = 1 - 1 + KL.
    # p = (.5, .25, .25), q = (.25, .25, .5): KL = .5 ln2 + 0 + .25 ln .5 = .25 ln 2 = .17329
    p, q = torch.tensor([.5, .25, .25]), torch.tensor([.25, .25, .5])
    kl = .25 * math.log(2)
    for kind in ("k1", "k3"):
        est = (p * kl_penalty(p.log(), q.log(), kind)).sum()
        assert abs(est.item() - kl) < 1e-6, kind


@pytest.mark.parametrize("seed", range(3))
def test_vectorised_matches_loop(seed):
    gen = torch.Generator().manual_seed(seed)
    logp = -torch.rand(4, 7, generator=gen) * 5
    ref = -torch.rand(4, 7, generator=gen) * 5
    formulas = {
        "k1": lambda a, b: a - b, "abs": lambda a, b: abs(a - b),
        "k2": lambda a, b: .5 * (a - b) ** 2,
        "k3": lambda a, b: min(10., max(-10., math.exp(b - a) - (b - a) - 1)),
    }
    for kind, f in formulas.items():
        want = [[f(a, b) for a, b in zip(ra, rb)] for ra, rb in zip(logp.tolist(), ref.tolist())]
        assert torch.allclose(kl_penalty(logp, ref, kind), torch.tensor(want), atol=1e-5), kind


def test_unknown_kind_lists_choices():
    with pytest.raises(ValueError, match="unknown kind 'k4'; available: k1, kl, abs"):
        kl_penalty(LOGP, REF, "k4")
