"""Greedy and sampled answers of a model to a problem set, scored: the engine of ``r1zero eval``
and of validation during training.

The rollout engine (any backend's ``make_rollout_engine``) reads ``self.cfg.rollout`` at each
``generate`` call; ``with_sampling`` points it at a copy of the config with other sampling
settings for the duration of one call. Greedy decoding is ``top_k = 1`` (the sampler and vLLM
both treat it as argmax), since ``rollout.temperature`` must be positive.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Sequence

import attrs

from r1zero.evaluate import metrics as M


@attrs.define
class Answers:
    """Per problem: the greedy answer and ``n`` sampled ones (texts, lengths, scores)."""

    greedy: list[dict[str, Any]] = attrs.field(factory=list)     # one per problem
    samples: list[list[dict[str, Any]]] = attrs.field(factory=list)  # n per problem


@contextmanager
def with_sampling(rollout: Any, **changes: Any):
    """Let ``rollout`` generate with ``cfg.rollout`` fields replaced by ``changes``."""
    cfg = rollout.cfg
    rollout.cfg = attrs.evolve(cfg, rollout=attrs.evolve(cfg.rollout, **changes))
    try:
        yield rollout
    finally:
        rollout.cfg = cfg


def _scored(rollout, tokenizer, scoring, rows: Sequence[Any], n: int, generator,
            **sampling: Any) -> list[list[dict[str, Any]]]:
    """n answers for each row, each ``{"response", "length", "finished", "reward",
    "components", "correct"}``."""
    with with_sampling(rollout, **sampling) as engine:
        out = engine.generate([r.input_ids for r in rows], n, generator)
    texts = tokenizer.batch_decode(out.response_ids, skip_special_tokens=True)
    owners = [rows[i] for i in out.prompt_index]
    batch = scoring.score(texts, [r.ground_truth for r in owners], [r.extra for r in owners])
    right = M.correctness(batch.components, batch.rewards)
    per_row: list[list[dict[str, Any]]] = [[] for _ in rows]
    for j, i in enumerate(out.prompt_index):
        per_row[i].append({
            "response": texts[j], "length": len(out.response_ids[j]),
            "finished": bool(out.finished[j]), "reward": float(batch.rewards[j]),
            "components": {k: float(v[j]) for k, v in batch.components.items()},
            "correct": bool(right[j])})
    return per_row


def answer(rollout, tokenizer, scoring, rows: Sequence[Any], n: int, temperature: float,
           generator=None, batch_size: int = 32,
           on_batch: Callable[[int], None] | None = None) -> Answers:
    """Greedy answers, plus ``n`` samples at ``temperature`` per row (n = 0 or temperature 0:
    the greedy answer stands for the single sample), ``batch_size`` prompts at a time."""
    result = Answers()
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        greedy = _scored(rollout, tokenizer, scoring, chunk, 1, generator, top_k=1, top_p=1.0,
                         min_p=0.0)
        result.greedy.extend(g[0] for g in greedy)
        if n and temperature > 0:
            result.samples.extend(_scored(rollout, tokenizer, scoring, chunk, n, generator,
                                          temperature=temperature))
        else:
            result.samples.extend(greedy)
        if on_batch is not None:
            on_batch(len(chunk))
    return result


def summarize(answers: Answers, k: int, sources: Sequence[str | None] = ()) -> dict[str, Any]:
    """The numbers of one evaluation: greedy accuracy, pass@k and mean@k over the samples
    (k <= n), format rate and mean response length (greedy), per-source breakdown."""
    greedy, samples = answers.greedy, answers.samples
    n = min((len(s) for s in samples), default=0)
    if not 1 <= k <= max(n, 1):
        raise ValueError(f"k = {k} must be between 1 and the {n} samples per problem")
    correct = [[s["correct"] for s in row] for row in samples]
    acc = [float(g["correct"]) for g in greedy]
    fmt = M.format_rate({k_: [g["components"][k_] for g in greedy]
                         for k_ in (greedy[0]["components"] if greedy else {})})
    out: dict[str, Any] = {
        "n_problems": len(greedy), "n": n, "k": k,
        "accuracy": M.mean(acc), **M.sampled_metrics(correct, k),
        "format_rate": fmt,
        "response_length": M.mean([g["length"] for g in greedy]),
        "sampled_response_length": M.mean([s["length"] for row in samples for s in row]),
        "clipped": M.mean([0.0 if g["finished"] else 1.0 for g in greedy]),
    }
    if any(s is not None for s in sources):
        per_pass = [M.pass_at_k(len(c), sum(c), k) for c in correct]
        per_mean = [M.mean_at_k(len(c), sum(c), k) for c in correct]
        acc_by = M.by_source(sources, acc)
        pass_by, mean_by = M.by_source(sources, per_pass), M.by_source(sources, per_mean)
        out["by_source"] = {s: {"n_problems": v["n"], "accuracy": v["mean"],
                                f"pass@{k}": pass_by[s]["mean"], f"mean@{k}": mean_by[s]["mean"]}
                            for s, v in acc_by.items()}
    return out
