"""pass@k / mean@k by hand, and the product form against the binomial definition."""

import math
import random

import pytest

from r1zero.evaluate.metrics import (by_source, correctness, format_rate, mean_at_k, pass_at_k,
                                     sampled_metrics)


def test_pass_at_k_by_hand():
    # n=4, c=1, k=2: 1 - C(3,2)/C(4,2) = 1 - 3/6 = 0.5
    assert pass_at_k(4, 1, 2) == pytest.approx(0.5)
    # n=5, c=2, k=2: 1 - C(3,2)/C(5,2) = 1 - 3/10 = 0.7
    assert pass_at_k(5, 2, 2) == pytest.approx(0.7)
    # k=1 is the share right: 3/8
    assert pass_at_k(8, 3, 1) == pytest.approx(0.375)
    # fewer wrong samples (1) than k (2): every pair holds a right one
    assert pass_at_k(3, 2, 2) == 1.0
    assert pass_at_k(4, 0, 4) == 0.0 and pass_at_k(4, 4, 1) == 1.0


def test_pass_at_k_matches_binomial_definition():
    rng = random.Random(0)
    for _ in range(200):
        n = rng.randint(1, 30)
        c, k = rng.randint(0, n), rng.randint(1, n)
        slow = 1 - math.comb(n - c, k) / math.comb(n, k)
        assert pass_at_k(n, c, k) == pytest.approx(slow, abs=1e-12)


def test_pass_at_k_is_never_below_mean_at_k():
    for n in range(1, 12):
        for c in range(n + 1):
            for k in range(1, n + 1):
                assert pass_at_k(n, c, k) >= mean_at_k(n, c, k) - 1e-12


@pytest.mark.parametrize("args", [(4, 5, 1), (4, -1, 1), (4, 1, 0), (4, 1, 5)])
def test_pass_at_k_refuses_impossible_counts(args):
    with pytest.raises(ValueError):
        pass_at_k(*args)


def test_sampled_metrics_averages_over_problems():
    # problem A: 1 of 4 right -> pass@2 .5, mean .25 ; B: 4 of 4 -> 1, 1 ; mean .75, .625
    out = sampled_metrics([[True, False, False, False], [True] * 4], k=2)
    assert out == {"pass@2": pytest.approx(0.75), "mean@2": pytest.approx(0.625)}


def test_correctness_prefers_an_accuracy_component():
    comps = {"base_acc/reward": [1.0, 0.5, 0.0], "base_acc/format": [1.0, 1.0, 0.0],
             "base_acc/accuracy": [1.0, 0.0, 0.0]}
    assert correctness(comps, [1.0, 0.5, 0.0]) == [True, False, False]
    assert correctness({"x/reward": [0.2, 0.0]}, [0.2, 0.0]) == [True, False]
    assert format_rate(comps) == pytest.approx(2 / 3)
    assert format_rate({"x/reward": [1.0]}) is None


def test_by_source_groups_and_skips_rows_without_one():
    # a: 1, 0 -> .5 ; b: 1 ; None left out
    out = by_source(["a", "b", None, "a"], [1.0, 1.0, 0.0, 0.0])
    assert out == {"a": {"n": 2, "mean": 0.5}, "b": {"n": 1, "mean": 1.0}}
