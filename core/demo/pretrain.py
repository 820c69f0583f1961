"""The next-token pretraining loop of the demo's base model.

Every corpus document starts with the same tokens (BOS, the template's instruction,
``\\nQ: What is``) -- about 60% of a document. :func:`shared_prefix_loss` runs that prefix once
per batch and lets the batch attend to its cached keys and values, which gives the same loss
and gradients as the plain (B, T) forward at about half the cost on a CPU.
"""

from __future__ import annotations

import inspect
import math
import time
from typing import Callable

import torch
import torch.nn.functional as F


def common_prefix_len(ids: list[list[int]]) -> int:
    """Length of the longest prefix that every row shares (at least one token shorter than the
    shortest row, so each row keeps a token to predict after it)."""
    first, n = ids[0], min(len(r) for r in ids) - 1
    for row in ids[1:]:
        k = 0
        while k < n and row[k] == first[k]:
            k += 1
        n = k
    return n


def shared_prefix_loss(model, prefix: torch.Tensor, suffixes: list[list[int]],
                       pad_id: int) -> torch.Tensor:
    """Mean next-token loss over B documents ``prefix + suffix_b`` with the prefix computed once.

    prefix: (P,) ids, P >= 1; suffixes: B lists of ids, right-padded here to (B, S).
    loss = (B * sum_{t<P} CE_prefix(t) + sum_b sum_t CE(suffix_b[t]))
           / (B * (P - 1) + #suffix tokens),
    i.e. exactly the loss of the (B, P + S) batch with padding ignored.
    """
    n_rows, width = len(suffixes), max(len(s) for s in suffixes)
    suffix = torch.tensor([s + [pad_id] * (width - len(s)) for s in suffixes], dtype=torch.long)
    labels = suffix.masked_fill(suffix == pad_id, -100)
    head = model(input_ids=prefix[None], use_cache=True)
    cache = head.cache if "cache" in head else head.past_key_values   # transformers 5 / 4.x
    cache.batch_repeat_interleave(n_rows)           # (1, ...) -> (B, ...), keeps the graph
    plen = prefix.numel()
    mask = torch.cat([torch.ones(n_rows, plen, dtype=torch.long), (suffix != pad_id).long()], 1)
    positions = torch.arange(plen, plen + width).expand(n_rows, -1)
    tail = model(input_ids=suffix, attention_mask=mask, position_ids=positions,
                 **{_cache_kwarg(model): cache})
    # The last prefix position predicts each suffix's first token.
    logits = torch.cat([head.logits[:, -1:].expand(n_rows, -1, -1), tail.logits[:, :-1]], 1)
    suffix_sum = F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=-100,
                                 reduction="sum")
    prefix_sum = F.cross_entropy(head.logits[0, :-1].float(), prefix[1:], reduction="sum")
    count = (labels != -100).sum() + n_rows * (plen - 1)
    return (suffix_sum + n_rows * prefix_sum) / count


def _cache_kwarg(model) -> str:
    """transformers 5 names the cache argument ``cache``; 4.x ``past_key_values``."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warmup to 1, then cosine decay from 1 to 0.1 at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.1 + 0.45 * (1 + math.cos(math.pi * progress))


def pretrain(model, ids: list[list[int]], *, steps: int, batch_size: int, lr: float, warmup: int,
             weight_decay: float, seed: int, pad_id: int,
             log: Callable[[str], None] = lambda _: None) -> list[float]:
    """AdamW on random batches of ``ids`` (documents sharing a prefix); returns the loss averaged
    over each 100 steps.

    Batches are drawn uniformly at random: batches grouped by length (less padding) turned out
    to group problem kinds and styles too, and the model then failed to learn addition.
    """
    gen = torch.Generator().manual_seed(seed)
    plen = common_prefix_len(ids)
    prefix = torch.tensor(ids[0][:plen], dtype=torch.long)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, warmup, steps))
    model.train()
    losses, window, tick = [], [], time.perf_counter()
    for step in range(steps):
        rows = torch.randint(len(ids), (batch_size,), generator=gen).tolist()
        loss = shared_prefix_loss(model, prefix, [ids[r][plen:] for r in rows], pad_id)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        window.append(loss.item())
        if len(window) == 100 or step == steps - 1:
            now = time.perf_counter()
            losses.append(round(sum(window) / len(window), 4))
            log(f"pretrain step {step + 1}/{steps} loss {losses[-1]:.3f} "
                f"({1000 * (now - tick) / len(window):.0f} ms/step)")
            window, tick = [], now
    model.eval()
    return losses
