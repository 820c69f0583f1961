"""The scoring engine every reward plugin runs in: scorers, the pool, one batch's result.

    with ScoringPool([(base_acc, 1.0)], workers=2, timeout_s=5.0) as pool:
        batch = pool.score(responses, ground_truths)   # -> ScoreBatch
        batch.rewards                  # [sum_i weight_i * reward_i]  per sample
        batch.components["base_acc/accuracy"]

A scorer (``Scorer``) scores ONE sample and returns ``{"reward": r, <component>: c, ...}``.
Scorers run in worker processes (``r1zero.scoring.workers``) with a per-sample wall-clock
timeout enforced by killing and replacing the worker. A timeout, a crash, an exception or a
malformed result gives that sample reward 0 and every component 0 *for that scorer*, is
counted in ``counts`` (``reward/timeouts``, ``reward/errors`` and per scorer
``reward/<name>/timeouts`` / ``.../errors``), logged on logger ``r1zero.scoring.pool`` and listed
in ``errors``; the batch always completes. A scorer with ``in_process = True`` (and a
``in_process_reason``) runs in the calling process instead: no isolation, no timeout.

The pool lives as long as the trainer: create it once and call ``score`` every step (a
call costs a few ms on top of the scoring itself). Scorers must be picklable, i.e. defined
at module level of an importable module; a script that builds a pool needs the usual
``if __name__ == "__main__":`` guard. The forkserver imports each scorer's module (and any
names in an optional ``preload_modules`` attribute) once, before forking workers.
"""

from __future__ import annotations

import logging
import os
import weakref
from typing import Any, Mapping, Protocol, Sequence, runtime_checkable

import attrs

from r1zero.scoring.workers import Outcome, Task, WorkerSet, check_result

log = logging.getLogger("r1zero.scoring.pool")
LOGGED_PER_SCORER = 5          # individual log lines per scorer and batch; the rest are summed


@runtime_checkable
class Scorer(Protocol):
    """What a reward plugin registers. ``score`` must be pure and safe on hostile text."""

    name: str
    components: tuple[str, ...]
    in_process: bool
    in_process_reason: str

    def score(self, response: str, ground_truth: str,
              extra: Mapping[str, Any]) -> dict[str, float]:
        """-> {"reward": float, "<component>": float, ...} for ONE sample."""


@attrs.define
class ScoreBatch:
    rewards: list[float]                    # combined: sum(weight_i * reward_i) over scorers
    components: dict[str, list[float]]      # "<scorer>/reward", "<scorer>/<component>"
    counts: dict[str, int]                  # "reward/timeouts", "reward/errors", per scorer too
    errors: list[str]                       # each names the scorer plugin and sample index


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _validate_scorers(scorers: Sequence[tuple[Any, float]]) -> None:
    names = [getattr(s, "name", None) for s, _ in scorers]
    for (s, w), name in zip(scorers, names):
        if not isinstance(name, str) or not name or not callable(getattr(s, "score", None)):
            raise ValueError(f"not a reward scorer (needs a name and score()): {s!r}")
        if not isinstance(w, (int, float)) or w != w:
            raise ValueError(f"reward scorer {name!r}: weight must be a number, got {w!r}")
        if getattr(s, "in_process", False) and not getattr(s, "in_process_reason", ""):
            raise ValueError(f"reward scorer {name!r} sets in_process without in_process_reason")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"reward scorers listed twice: {dupes}")


class ScoringPool:
    """Worker processes that score batches; a context manager (``close`` kills the workers)."""

    def __init__(self, scorers: Sequence[tuple[Scorer, float]], workers: int | None = None,
                 timeout_s: float = 5.0, chunk_size: int = 16):
        _validate_scorers(scorers)
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s!r}")
        self.scorers = [s for s, _ in scorers]
        self.weights = [float(w) for _, w in scorers]
        self.timeout_s = timeout_s
        self._pooled = [i for i, s in enumerate(self.scorers) if not getattr(s, "in_process", False)]
        self._workers: WorkerSet | None = None
        if self._pooled:
            cores = available_cores()
            n = workers if workers is not None else cores
            if n < 1:
                raise ValueError(f"workers must be >= 1, got {n}")
            if n > cores:
                log.warning("note: %d scoring workers requested, %d cores available: using %d "
                            "(more processes than cores only add memory and switching)", n,
                            cores, cores)
                n = cores
            pooled = [self.scorers[i] for i in self._pooled]
            preload = sorted({m for s in pooled for m in (type(s).__module__,
                                                           *getattr(s, "preload_modules", ()))}
                             - {"__main__"})
            self._workers = WorkerSet(pooled, n, timeout_s, max(1, chunk_size), preload)
            self._finalizer = weakref.finalize(self, self._workers.close)

    @property
    def workers_replaced(self) -> int:
        """How many workers were killed (timeout) or died (crash) and were replaced."""
        return self._workers.replaced if self._workers else 0

    def score(self, responses: Sequence[str], ground_truths: Sequence[str],
              extras: Sequence[Mapping] | None = None) -> ScoreBatch:
        """Score n samples with every scorer; see the module docstring for failures."""
        n = len(responses)
        if len(ground_truths) != n or (extras is not None and len(extras) != n):
            raise ValueError(f"score(): {n} responses, {len(ground_truths)} ground truths, "
                             f"{'no' if extras is None else len(extras)} extras")
        extras = list(extras) if extras is not None else [{}] * n
        results = self._run_pooled(responses, ground_truths, extras)
        for s_idx, scorer in enumerate(self.scorers):
            if s_idx not in self._pooled:
                for i, outcome in enumerate(_score_here(scorer, responses, ground_truths, extras)):
                    results[(s_idx, i)] = outcome
        return self._assemble(n, results)

    def _run_pooled(self, responses, ground_truths, extras) -> dict[tuple[int, int], Outcome]:
        if self._workers is None or not responses:
            return {}
        tasks = [Task(len(self._pooled) * i + j, j, responses[i], ground_truths[i], extras[i])
                 for i in range(len(responses)) for j in range(len(self._pooled))]
        outcomes = self._workers.run(tasks)
        return {(self._pooled[t.scorer], t.task_id // len(self._pooled)): outcomes[t.task_id]
                for t in tasks}

    def _assemble(self, n: int, results: dict[tuple[int, int], Outcome]) -> ScoreBatch:
        components: dict[str, list[float]] = {}
        counts = {"reward/timeouts": 0, "reward/errors": 0}
        errors: list[str] = []
        rewards = [0.0] * n
        for s_idx, (scorer, weight) in enumerate(zip(self.scorers, self.weights)):
            keys = ("reward", *scorer.components)
            cols = {k: [0.0] * n for k in keys}
            bad = {"timeout": 0, "error": 0}
            for i in range(n):
                outcome = results[(s_idx, i)]
                if outcome.status == "ok":
                    for k in keys:
                        cols[k][i] = outcome.value[k]
                    rewards[i] += weight * outcome.value["reward"]
                    continue
                bad[outcome.status] += 1
                errors.append(f"reward scorer {scorer.name!r} sample {i}: {outcome.status}: "
                              f"{outcome.value}")
                if bad["timeout"] + bad["error"] <= LOGGED_PER_SCORER:
                    log.warning("%s", errors[-1])
            if bad["timeout"] + bad["error"] > LOGGED_PER_SCORER:
                log.warning("reward scorer %r: %d timeouts and %d errors in this batch of %d",
                            scorer.name, bad["timeout"], bad["error"], n)
            for k in keys:
                components[f"{scorer.name}/{k}"] = cols[k]
            counts[f"reward/{scorer.name}/timeouts"] = bad["timeout"]
            counts[f"reward/{scorer.name}/errors"] = bad["error"]
            counts["reward/timeouts"] += bad["timeout"]
            counts["reward/errors"] += bad["error"]
        return ScoreBatch(rewards, components, counts, errors)

    def close(self) -> None:
        if self._workers is not None:
            self._finalizer()
            self._workers = None

    def __enter__(self) -> "ScoringPool":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _score_here(scorer: Any, responses: Sequence[str], ground_truths: Sequence[str],
                extras: Sequence[Mapping[str, Any]]) -> list[Outcome]:
    """An ``in_process`` scorer on a batch, here: ``score_batch`` if it has one (falling back
    to one sample at a time when it raises or returns the wrong length); errors are data."""
    batch = getattr(scorer, "score_batch", None)
    if batch is not None:
        try:
            raws = list(batch(list(responses), list(ground_truths), list(extras)))
            if len(raws) == len(responses):
                return [_checked(scorer, raw) for raw in raws]
        except Exception:  # noqa: BLE001 - retried per sample to find the culprit
            pass
    outcomes = []
    for response, ground_truth, extra in zip(responses, ground_truths, extras):
        try:
            outcomes.append(_checked(scorer, scorer.score(response, ground_truth, extra)))
        except Exception as exc:  # noqa: BLE001 - a scorer's failure is data here
            outcomes.append(Outcome("error", f"{type(exc).__name__}: {exc}"[:2000]))
    return outcomes


def _checked(scorer: Any, raw: Any) -> Outcome:
    try:
        return Outcome("ok", check_result(scorer.name, scorer.components, raw))
    except Exception as exc:  # noqa: BLE001
        return Outcome("error", str(exc))
