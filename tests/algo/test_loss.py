import math

import pytest
import torch

from r1zero.algo import aggregate_loss, masked_mean, objective, ppo_clip_loss


def clipped_policy_loss(logp, logp_old, adv, mask, clip_ratio=.2, clip_ratio_high=None,
                        dual_clip=None, agg="token-mean"):
    """The PPO term as the objective aggregates it: (loss, clipfrac, approx_kl)."""
    mat, clipfrac, approx_kl = ppo_clip_loss(logp, logp_old, adv, mask, clip_ratio=clip_ratio,
                                             clip_ratio_high=clip_ratio_high, dual_clip=dual_clip)
    return aggregate_loss(mat, mask, agg), clipfrac, approx_kl

# One sequence of 4 tokens, logp_old = 0 so ratio = exp(logp) = 1.5, .9, 1.5, .5 ; A = 1,1,-1,-1.
RATIO = torch.tensor([[1.5, .9, 1.5, .5]])
ADV = torch.tensor([[1., 1., -1., -1.]])
MASK4 = torch.ones(1, 4)


def test_masked_mean():
    x = torch.tensor([[1., 2., 3.], [4., 5., 6.]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    # (1+2+4)/3 = 7/3 ; rows: (1+2)/2 = 1.5, 4/1 = 4
    assert torch.allclose(masked_mean(x, mask), torch.tensor(7 / 3))
    assert torch.allclose(masked_mean(x, mask, dim=-1), torch.tensor([1.5, 4.]))
    assert masked_mean(x, torch.zeros(2, 3)).item() == 0.0


def test_clipped_loss_by_hand():
    # t0 A=1 r=1.5: max(-1.5, -1.2) = -1.2 (clipped) ; t1 A=1 r=.9: -.9 (inside)
    # t2 A=-1 r=1.5: max(1.5, 1.2) = 1.5 (unclipped wins) ; t3 A=-1 r=.5: max(.5, .8) = .8 (clipped)
    # token-mean (-1.2 - .9 + 1.5 + .8)/4 = .05 ; clipfrac 2/4 ;
    # approx_kl = -mean(ln1.5, ln.9, ln1.5, ln.5) = -(.405465 - .105361 + .405465 - .693147)/4
    logp = RATIO.log().requires_grad_()
    loss, clipfrac, approx_kl = clipped_policy_loss(logp, torch.zeros(1, 4), ADV, MASK4)
    assert loss.item() == pytest.approx(.05, abs=1e-6)
    assert clipfrac.item() == pytest.approx(.5)
    assert approx_kl.item() == pytest.approx(-.012422 / 4, abs=1e-6)
    # d loss/d logp = -A·r/4 where unclipped, 0 where clipped: 0, -.9/4, 1.5/4, 0
    loss.backward()
    assert torch.allclose(logp.grad, torch.tensor([[0., -.225, .375, 0.]]), atol=1e-6)


def test_per_sample_advantages_broadcast():
    loss, _, _ = clipped_policy_loss(RATIO.log(), torch.zeros(1, 4), torch.tensor([1.]), MASK4)
    # A=1 everywhere: -1.2, -.9, -1.2, -.8 (r=.5 -> max(-.5, -.8) = -.5) -> (-1.2-.9-1.2-.5)/4
    assert loss.item() == pytest.approx(-3.8 / 4, abs=1e-6)


def test_clip_ratio_high_and_dual_clip():
    logp = torch.tensor([[math.log(1.5), math.log(5.), math.log(5.)]])
    adv = torch.tensor([[1., -1., 1.]])
    ones = torch.ones(1, 3)
    # clip-higher .28: t0 max(-1.5, -1.28) = -1.28 ; t1 A=-1 r=5: max(5, 1.28) = 5 ; t2 -1.28
    loss, _, _ = clipped_policy_loss(logp, torch.zeros(1, 3), adv, ones, clip_ratio_high=.28,
                                     agg="seq-mean-token-sum")
    assert loss.item() == pytest.approx(-1.28 + 5 - 1.28, abs=1e-5)
    # dual clip c=3 caps only the negative-advantage token: min(5, 3) = 3 ; -1.2 + 3 - 1.2
    loss, _, _ = clipped_policy_loss(logp, torch.zeros(1, 3), adv, ones, dual_clip=3.,
                                     agg="seq-mean-token-sum")
    assert loss.item() == pytest.approx(-1.2 + 3 - 1.2, abs=1e-5)
    with pytest.raises(ValueError, match="dual_clip must be > 1, got 0.5"):
        clipped_policy_loss(logp, logp, adv, ones, dual_clip=.5)


def test_aggregations():
    loss_mat = torch.tensor([[1., 2., 3.], [4., 0., 0.]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    # token-mean 10/4 = 2.5 ; seq-mean-token-mean (6/3 + 4/1)/2 = 3 ; seq-mean-token-sum (6+4)/2 = 5
    want = {"token-mean": 2.5, "seq-mean-token-mean": 3., "seq-mean-token-sum": 5.}
    zeros = torch.zeros(2, 3)
    for agg, value in want.items():
        assert aggregate_loss(loss_mat, mask, agg).item() == pytest.approx(value)
        # ratio 1 -> per-token loss is -A, so A = -loss_mat reproduces loss_mat
        loss, clipfrac, _ = clipped_policy_loss(zeros, zeros, -loss_mat, mask, agg=agg)
        assert loss.item() == pytest.approx(value) and clipfrac.item() == 0
    with pytest.raises(ValueError, match="unknown agg 'sum'"):
        aggregate_loss(loss_mat, mask, "sum")


def _loop_loss(logp, old, adv, mask, eps, eps_high, c, agg):
    per_seq, tokens, total = [], 0, 0.0
    for lr, orow, arow, mrow in zip(logp, old, adv, mask):
        s, k = 0.0, 0
        for lp, lo, a, m in zip(lr, orow, arow, mrow):
            if not m:
                continue
            r = math.exp(lp - lo)
            l = max(-a * r, -a * min(max(r, 1 - eps), 1 + eps_high))
            if c is not None and a < 0:
                l = min(l, -a * c)
            s, k = s + l, k + 1
        per_seq.append((s, k))
        tokens, total = tokens + k, total + s
    if agg == "token-mean":
        return total / tokens
    if agg == "seq-mean-token-mean":
        return sum(s / max(k, 1) for s, k in per_seq) / len(per_seq)
    return sum(s for s, _ in per_seq) / len(per_seq)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("agg", ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum"])
def test_vectorised_matches_loop(seed, agg):
    gen = torch.Generator().manual_seed(seed)
    logp = -torch.rand(5, 9, generator=gen) * 3
    old = logp + (torch.rand(5, 9, generator=gen) - .5)
    adv = torch.randn(5, 1, generator=gen).expand(5, 9)
    lengths = torch.randint(1, 10, (5,), generator=gen)
    mask = (torch.arange(9) < lengths[:, None]).float()
    c = [None, 3.0, 2.0][seed]
    got, _, _ = clipped_policy_loss(logp, old, adv, mask, .2, .28, c, agg)
    want = _loop_loss(logp.tolist(), old.tolist(), adv.tolist(), mask.tolist(), .2, .28, c, agg)
    assert got.item() == pytest.approx(want, abs=1e-5)


def test_objective_composes_terms():
    # pg = .05 (test above); k1 vs ref 0: mean(logp) = .012422/4 = .0031055 ; entropy 2 everywhere
    # loss = .05 + .1·.0031055 - .01·2 = .03031055
    logp = RATIO.log().requires_grad_()
    out = objective(logp, torch.zeros(1, 4), ADV, MASK4, logp_ref=torch.zeros(1, 4),
                    entropy=torch.full((1, 4), 2.), kl_coef=.1, kl_kind="k1", entropy_coeff=.01)
    assert set(out) == {"loss", "pg_loss", "kl", "entropy", "clipfrac", "approx_kl"}
    assert out["loss"].item() == pytest.approx(.03031055, abs=1e-6)
    assert out["pg_loss"].item() == pytest.approx(.05, abs=1e-6)
    assert out["kl"].item() == pytest.approx(.0031055, abs=1e-6)
    assert out["entropy"].item() == 2.0 and out["clipfrac"].item() == .5
    out["loss"].backward()
    assert logp.grad is not None and not out["pg_loss"].requires_grad
    bare = objective(RATIO.log(), torch.zeros(1, 4), ADV, MASK4)
    assert bare["kl"].item() == 0 and bare["loss"].item() == pytest.approx(.05, abs=1e-6)


def test_seq_mean_token_sum_norm_divides_by_a_constant():
    # rows: [1, 2, (pad)] and [4, (pad), (pad)]; sums 3 and 4; 1/2 · (3 + 4) / L with L = 10
    x = torch.tensor([[1., 2., 9.], [4., 9., 9.]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert aggregate_loss(x, mask, "seq-mean-token-sum-norm", norm_len=10).item() == pytest.approx(.35)
    with pytest.raises(ValueError, match="norm_len"):
        aggregate_loss(x, mask, "seq-mean-token-sum-norm")


def test_objective_aggregates_kl_and_entropy_like_the_policy_term():
    # two sequences, lengths 1 and 3; A = 0 (pg = 0); k1 KL = logp - 0; entropy = 1 everywhere.
    # logp row 0: [.4], row 1: [.1, .1, .1]
    # token-mean KL = (.4 + .3) / 4 = .175 ; seq-mean-token-mean KL = (.4 + .1) / 2 = .25
    logp = torch.tensor([[.4, 0., 0.], [.1, .1, .1]])
    mask = torch.tensor([[1., 0., 0.], [1., 1., 1.]])
    for agg, kl in (("token-mean", .175), ("seq-mean-token-mean", .25)):
        out = objective(logp, logp, torch.zeros(2), mask, logp_ref=torch.zeros(2, 3),
                        entropy=torch.ones(2, 3), kl_coef=1.0, kl_kind="k1", entropy_coeff=.5,
                        agg=agg)
        assert out["kl"].item() == pytest.approx(kl) and out["entropy"].item() == pytest.approx(1.)
        assert out["loss"].item() == pytest.approx(kl - .5)
