"""Samples.extend: two rounds (dynamic sampling) or two rollout instances' slices joined."""

from __future__ import annotations

from r1zero.trainer.samples import Samples


def _round(tag: str, logprobs: bool) -> Samples:
    return Samples([f"{tag}0"], [0, 0], [[1, 2], [3]], [True, False], [1.0, 0.0],
                   {"x/format": [1.0, 0.0]}, {"reward/errors": 1},
                   [[-0.1, -0.2], [-0.3]] if logprobs else None)


def test_extend_joins_per_sample_lists_once_and_keeps_none_as_none():
    a, b = _round("a", True), _round("b", True)
    a.extend(b)
    assert a.group == [0, 0, 1, 1] and a.rows == ["a0", "b0"]
    assert a.logprobs == [[-0.1, -0.2], [-0.3], [-0.1, -0.2], [-0.3]]   # one per sample
    assert a.versions is None and a.routes is None                      # a sync run's
    assert a.counts == {"reward/errors": 2} and a.components["x/format"] == [1.0, 0.0] * 2
    c = _round("c", False)
    c.extend(_round("d", True))
    assert c.logprobs is None                       # not every round has them: none
