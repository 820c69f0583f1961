"""Evaluation metrics as pure functions of per-sample correctness (no I/O, no models).

``correct[p]`` is the list of n booleans for problem p's samples. With c of n samples right:

    pass@k = 1 - C(n-c, k) / C(n, k)    the chance that at least one of k samples drawn
                                        without replacement from the n is right (unbiased
                                        estimator of Chen et al. 2021, "Evaluating Large
                                        Language Models Trained on Code", eq. 1)
    mean@k = c / n                      the expected share of right answers among k samples;
                                        the unbiased estimate from n >= k samples is c / n for
                                        every k, and pass@k >= pass@1 = mean@k
"""

from __future__ import annotations

from typing import Mapping, Sequence


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one problem with ``c`` right out of ``n`` samples, 1 <= k <= n.

    1 - prod_{i=n-c+1}^{n} (1 - k / i): the product form of 1 - C(n-c, k) / C(n, k), which
    avoids huge binomials. When fewer than k samples are wrong, every k-subset has a right one.
    """
    if not 0 <= c <= n:
        raise ValueError(f"pass_at_k: need 0 <= c <= n, got c={c}, n={n}")
    if not 1 <= k <= n:
        raise ValueError(f"pass_at_k: need 1 <= k <= n, got k={k}, n={n}")
    if n - c < k:
        return 1.0
    miss = 1.0
    for i in range(n - c + 1, n + 1):
        miss *= 1.0 - k / i
    return 1.0 - miss


def mean_at_k(n: int, c: int, k: int) -> float:
    """Expected share of right answers among k samples: c / n (the same for every k <= n)."""
    if not 1 <= k <= n:
        raise ValueError(f"mean_at_k: need 1 <= k <= n, got k={k}, n={n}")
    if not 0 <= c <= n:
        raise ValueError(f"mean_at_k: need 0 <= c <= n, got c={c}, n={n}")
    return c / n


def sampled_metrics(correct: Sequence[Sequence[bool]], k: int) -> dict[str, float]:
    """``{"pass@k": ..., "mean@k": ...}`` averaged over problems (each with the same n >= k)."""
    if not correct:
        return {f"pass@{k}": float("nan"), f"mean@{k}": float("nan")}
    passes, means = [], []
    for row in correct:
        n, c = len(row), sum(bool(x) for x in row)
        passes.append(pass_at_k(n, c, k))
        means.append(mean_at_k(n, c, k))
    return {f"pass@{k}": sum(passes) / len(passes), f"mean@{k}": sum(means) / len(means)}


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def by_source(sources: Sequence[str | None], values: Sequence[float]) -> dict[str, dict[str, float]]:
    """Per-source ``{"n": count, "mean": mean}`` of per-problem ``values`` (rows without a
    source are left out; empty when no row has one)."""
    groups: dict[str, list[float]] = {}
    for src, v in zip(sources, values):
        if src is not None:
            groups.setdefault(str(src), []).append(v)
    return {s: {"n": len(vs), "mean": mean(vs)} for s, vs in sorted(groups.items())}


def correctness(components: Mapping[str, Sequence[float]], rewards: Sequence[float]) -> list[bool]:
    """Per-sample right/wrong: any scorer's ``accuracy`` component >= 0.5 when a scorer has one
    (``<scorer>/accuracy``), else the combined reward > 0."""
    acc = [key for key in components if key.rsplit("/", 1)[-1] == "accuracy"]
    if acc:
        cols = [components[key] for key in acc]
        return [any(col[i] >= 0.5 for col in cols) for i in range(len(rewards))]
    return [r > 0 for r in rewards]


def format_rate(components: Mapping[str, Sequence[float]]) -> float | None:
    """Mean of the first ``<scorer>/format`` component; None when no scorer reports a format."""
    for key, col in components.items():
        if key.rsplit("/", 1)[-1] == "format":
            return mean(list(col))
    return None
