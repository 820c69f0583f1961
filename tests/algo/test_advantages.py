import math

import pytest
import torch

from r1zero.algo import group_advantages


def g(*ids):
    return torch.tensor(ids)


def test_group_advantages_two_groups():
    # A: 1,0 -> mean .5, unbiased std .7071 -> ±.7071 ; B: 1,1 -> std 0 -> 0,0
    adv = group_advantages(torch.tensor([1., 0., 1., 1.]), g(0, 0, 1, 1))
    assert torch.allclose(adv, torch.tensor([.7071, -.7071, 0., 0.]), atol=1e-4)


def test_group_of_three():
    # 1,0,0: mean 1/3, deviations 2/3,-1/3,-1/3; unbiased var (4/9+1/9+1/9)/2 = 1/3, std .57735
    # -> (2/3)/.57735 = 1.1547, (-1/3)/.57735 = -.57735
    adv = group_advantages(torch.tensor([1., 0., 0.]), g(0, 0, 0))
    assert torch.allclose(adv, torch.tensor([1.1547, -.57735, -.57735]), atol=1e-4)


def test_mean_only_dr_grpo():
    # scale=False: 1,0,0 - 1/3 -> .6667, -.3333, -.3333
    adv = group_advantages(torch.tensor([1., 0., 0.]), g(0, 0, 0), scale=False)
    assert torch.allclose(adv, torch.tensor([2 / 3, -1 / 3, -1 / 3]), atol=1e-6)


def test_biased_std():
    # 1,0 with population std .5 -> ±.5/(.5+1e-6) = ±.999998
    adv = group_advantages(torch.tensor([1., 0.]), g(0, 0), std_unbiased=False)
    assert torch.allclose(adv, torch.tensor([.999998, -.999998]), atol=1e-6)


def test_eps_enters_denominator():
    # 1,0: std .70711; eps .29289 -> .5/(.70711+.29289) = .5
    adv = group_advantages(torch.tensor([1., 0.]), g(0, 0), eps=1 - math.sqrt(.5))
    assert torch.allclose(adv, torch.tensor([.5, -.5]), atol=1e-5)


def test_equal_rewards_give_exact_zeros():
    # .1 is not representable: the float32 mean of three .1 may differ from .1 by an ulp, and
    # an ulp / 1e-6 would be noise; equal groups must give exact zeros. Groups of one too.
    assert torch.equal(group_advantages(torch.full((3,), .1), g(0, 0, 0)), torch.zeros(3))
    assert torch.equal(group_advantages(torch.tensor([.3, .7]), g(0, 1)), torch.zeros(2))


def test_groups_by_prompt_index_not_position():
    # interleaved samples of prompts 7 and 2, and groups of different sizes:
    # prompt 7: 1, 0 -> ±.7071 ; prompt 2: 0, 0, 1 -> mean 1/3, std .57735 -> -.57735, -.57735, 1.1547
    adv = group_advantages(torch.tensor([1., 0., 0., 0., 1.]), g(7, 2, 2, 7, 2))
    want = torch.tensor([.7071, -.57735, -.57735, -.7071, 1.1547])
    assert torch.allclose(adv, want, atol=1e-4)


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match=r"1-D"):
        group_advantages(torch.zeros(5), g(0, 0))
    with pytest.raises(ValueError, match=r"1-D"):
        group_advantages(torch.zeros(2, 2), g(0, 0))


def _loop_reference(rewards: list[float], g: int, eps: float, scale: bool) -> list[float]:
    out = []
    for start in range(0, len(rewards), g):
        grp = rewards[start:start + g]
        mean = sum(grp) / g
        std = math.sqrt(sum((x - mean) ** 2 for x in grp) / (g - 1))
        for x in grp:
            if max(grp) == min(grp):
                out.append(0.0)
            else:
                out.append((x - mean) / (std + eps) if scale else x - mean)
    return out


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("scale", [True, False])
def test_vectorised_matches_loop(seed, scale):
    gen = torch.Generator().manual_seed(seed)
    g = [2, 4, 8, 16][seed]
    # rewards in {0, .5, 1}, as rule rewards are, so some groups come out constant
    rewards = torch.randint(0, 3, (g * 6,), generator=gen).float() / 2
    want = _loop_reference(rewards.tolist(), g, 1e-6, scale)
    got = group_advantages(rewards, torch.arange(g * 6) // g, scale=scale)
    assert torch.allclose(got, torch.tensor(want), atol=1e-5)
