"""One step's scored samples, group by group: what dynamic sampling concatenates and filters.

Group g is the samples of prompt ``rows[g]``; ``group[i]`` is sample i's group. A rollout's
``SampleOutput`` and the pool's ``ScoreBatch`` for it make one ``Samples``; further rounds
(DAPO's dynamic sampling) are appended with ``extend`` and groups dropped with ``keep``.

``logprobs[i]`` are the rollout's log-probs of ``response_ids[i]`` (``SampleOutput.logprobs``),
None when the rollout engine returned none; ``routes[i]`` its recorded expert choices (MoE
routing replay), None when not recorded.
"""

from __future__ import annotations

import hashlib
from typing import Any, Iterable

import attrs


def prompt_seed(seed: int, step: int, prompt: Any) -> int:
    """The sampling seed of dataset row ``prompt`` (its id) at ``step``: a function of the run's seed, the
    step and the prompt only, so samples do not depend on the rank count, the batch layout or
    the step that generates them (``rollout.mode``)."""
    digest = hashlib.blake2b(f"{seed}:{step}:{prompt}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


@attrs.define
class Samples:
    rows: list                      # the prompts (PromptRow), one per group
    group: list[int]                # sample -> index into rows
    response_ids: list[list[int]]
    finished: list[bool]
    rewards: list[float]
    components: dict[str, list[float]]
    counts: dict[str, int]
    logprobs: list[list[float]] | None = None
    routes: list | None = None
    # the weight version (updates done) that generated each response token (rollout.mode
    # one_step_off / async), None in a sync run
    versions: list[list[int]] | None = None

    @classmethod
    def of(cls, rows: list, out: Any, scored: Any, versions: list | None = None) -> "Samples":
        lps = getattr(out, "logprobs", None) or None
        if lps is not None and [len(x) for x in lps] != [len(r) for r in out.response_ids]:
            lps = None      # not one log-prob per response token: treated as none returned
        routes = getattr(out, "routes", None) or None
        return cls(list(rows), list(out.prompt_index), [list(r) for r in out.response_ids],
                   [bool(f) for f in out.finished], list(scored.rewards),
                   {k: list(v) for k, v in scored.components.items()}, dict(scored.counts),
                   [list(x) for x in lps] if lps is not None else None,
                   list(routes) if routes is not None else None, versions)

    def __len__(self) -> int:
        return len(self.group)

    @property
    def owners(self) -> list:
        return [self.rows[g] for g in self.group]

    def extend(self, other: "Samples") -> None:
        """Append another round's samples (its groups numbered after this one's)."""
        base = len(self.rows)
        self.rows.extend(other.rows)
        self.group.extend(g + base for g in other.group)
        self.response_ids.extend(other.response_ids)
        self.finished.extend(other.finished)
        self.rewards.extend(other.rewards)
        for k, v in other.components.items():
            self.components.setdefault(k, []).extend(v)
        for k, v in other.counts.items():
            self.counts[k] = self.counts.get(k, 0) + v
        self.logprobs = _joined(self.logprobs, other.logprobs)
        self.routes = _joined(self.routes, other.routes)
        self.versions = _joined(self.versions, other.versions)

    def keep(self, groups: Iterable[int]) -> "Samples":
        """Only the samples of ``groups`` (in their order here), groups renumbered 0.."""
        new = {g: i for i, g in enumerate(sorted(set(groups)))}
        idx = [i for i, g in enumerate(self.group) if g in new]
        return Samples([self.rows[g] for g in sorted(new)], [new[self.group[i]] for i in idx],
                       [self.response_ids[i] for i in idx], [self.finished[i] for i in idx],
                       [self.rewards[i] for i in idx],
                       {k: [v[i] for i in idx] for k, v in self.components.items()},
                       dict(self.counts), pick(self.logprobs, idx),
                       pick(self.routes, idx), pick(self.versions, idx))


def _joined(a: list | None, b: list | None) -> list | None:
    """Per-sample lists of two rounds, None unless both rounds have them."""
    return a + b if a is not None and b is not None else None


def pick(a: list | None, idx: list[int]) -> list | None:
    """Entries ``idx`` of a per-sample list (logprobs, routes, versions), None staying None."""
    return None if a is None else [a[i] for i in idx]
