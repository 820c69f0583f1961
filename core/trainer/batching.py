"""Micro-batches cut by a token budget (``actor.max_packing_token_size`` with
``actor.use_dynamic_bsz`` or ``actor.use_remove_padding``).

A micro-batch of sequences (p_i prompt, r_i response tokens) laid out padded
(``engines.torch_engine.SeqBatch``) costs len(chunk) * (max p_i + max r_i) positions; packed
(``engines.packing.PackedBatch``, ``use_remove_padding``) at most sum(p_i + r_i). With a budget
the trainer cuts its length-sorted sequences into consecutive chunks that stay within it,
instead of a fixed ``micro_batch_size``; a sequence longer than the budget forms a chunk alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from r1zero.host.errors import ConfigError

if TYPE_CHECKING:
    from r1zero.config.recipe import RecipeConfig


def check_dynamic_bsz(cfg: RecipeConfig) -> None:
    """The two keys act together: each alone is refused, by name."""
    a = cfg.actor
    if a.use_dynamic_bsz and not a.max_packing_token_size:
        raise ConfigError("use_dynamic_bsz needs actor.max_packing_token_size (tokens per "
                          "micro-batch, padding included)", key="actor.use_dynamic_bsz")
    if a.max_packing_token_size and not (a.use_dynamic_bsz or a.use_remove_padding):
        raise ConfigError(f"max_packing_token_size {a.max_packing_token_size} acts only with "
                          "actor.use_dynamic_bsz: true or actor.use_remove_padding: true",
                          key="actor.max_packing_token_size")
    if a.max_packing_token_size is not None and a.max_packing_token_size <= 0:
        raise ConfigError(f"max_packing_token_size must be > 0, got {a.max_packing_token_size}",
                          key="actor.max_packing_token_size")


def token_budget_chunks(order: Sequence[int], lengths: Sequence[tuple[int, int]],
                        budget: int, packed: bool = False) -> list[list[int]]:
    """Consecutive chunks of ``order`` whose padded (or ``packed``) size stays within ``budget``.

    lengths[i] = (prompt, response) tokens of sequence i. E.g. lengths (3,1), (3,2), (3,2),
    (5,4) with budget 10: [0, 1] costs 2*(3+2) = 10, adding 2 would cost 15 -> [[0, 1], [2], [3]]
    ([2, 3] would cost 2*(5+4) = 18). Packed, the cost is the sum of p + r (an upper bound: a
    prompt shared by adjacent rows is laid out once): (3+1)+(3+2) = 9, +5 = 14 > 10 ->
    [[0, 1], [2], [3]] too; budget 14 -> [[0, 1, 2], [3]].
    """
    chunks: list[list[int]] = []
    cur: list[int] = []
    p_max = r_max = total = 0
    for i in order:
        p, r = lengths[i]
        np_, nr = max(p_max, p), max(r_max, r)
        cost = total + p + r if packed else (len(cur) + 1) * (np_ + nr)
        if cur and cost > budget:
            chunks.append(cur)
            cur, np_, nr, total = [], p, r, 0
        cur.append(i)
        p_max, r_max, total = np_, nr, total + p + r
    if cur:
        chunks.append(cur)
    return chunks


def split_to(chunks: list[list[int]], n: int) -> list[list[int]]:
    """Halve the largest chunks until there are ``n`` (sharded ranks must run the same number
    of forwards); halves stay within any budget the whole met. n <= the number of items."""
    out = [list(c) for c in chunks]
    while len(out) < n:
        k = max(range(len(out)), key=lambda j: len(out[j]))
        if len(out[k]) < 2:
            raise ValueError(f"cannot split {sum(map(len, out))} items into {n} chunks")
        half = len(out[k]) // 2
        out[k:k + 1] = [out[k][:half], out[k][half:]]
    return out
