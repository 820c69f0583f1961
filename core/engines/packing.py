"""Packed sequences (``actor.use_remove_padding``) for the HF-model engines (torch, fsdp).

A micro-batch of B (prompt, response) sequences runs as one row of T = sum of real tokens, no
padding. A prompt shared by several rows (the n samples of a GRPO group, adjacent after the
trainer's sort) is laid out once, followed by each of its responses::

    row:      [ prompt_g | resp_1 | resp_2 | ... | prompt_h | resp_k | ... ]
    position:   0..P-1    P..P+r1  P..P+r2         0..Q-1     Q..Q+rk

Position ids restart per sequence, so rotary embeddings see what a padded row sees. Attention
keeps within each sequence: a prompt attends to itself causally, a response to its prompt and
causally to itself. The attention function registered here (``r1zero_packed``) runs one SDPA
call per segment on the keys it may see, so the cost is sum over segments of r * (P + r), not
T^2; without packing arguments it is the model's own attention, unchanged.

Log-probs and entropies come back as (B, R) like the padded ``SeqBatch``'s, zero past each
response's end, with ``response_ids`` / ``response_mask`` in the same layout: the objective,
KL and loss aggregation see the same per-token values.
"""

from __future__ import annotations

import contextlib
from typing import Any, Sequence

import torch

from r1zero.host.errors import ConfigError

ATTN_NAME = "r1zero_packed"
_BASE: dict[str, str] = {}      # model class name -> attention implementation it had


class PackedBatch:
    """B sequences packed into one (1, T) row.

    ``input_ids`` / ``position_ids`` (1, T); ``segments`` per attention call
    (query start, query end, prefix start, prefix end) with an empty prefix for a prompt;
    ``keep`` (K,) the row positions whose logits are needed; ``pick`` (B, R) index into those K
    logits for response token t of row b (t < r_b; 0 elsewhere); ``response_ids`` (B, R),
    ``response_mask`` (B, R) float, as ``SeqBatch``; ``sequences`` the (prompt, response)
    pairs (the megatron engine lays them out its own way). ``shared``: rows share a laid-out prompt.
    E.g. prompts [[5, 6], [5, 6]], responses [[7], [8, 9]]: ids [5, 6, 7, 8, 9], positions
    [0, 1, 2, 2, 3], segments [(0, 2, 0, 0), (2, 3, 0, 2), (3, 5, 0, 2)], keep [1, 3] (position 1
    predicts both first tokens, 3 predicts 9), pick [[0], [0, 1]] -> [[0, 0], [0, 1]] padded.
    """

    def __init__(self, prompts: Sequence[Sequence[int]], responses: Sequence[Sequence[int]],
                 pad_id: int, device: torch.device, share: bool = True):
        b, width = len(prompts), max(1, max(len(r) for r in responses))
        ids: list[int] = []
        pos: list[int] = []
        segs: list[tuple[int, int, int, int]] = []
        src = torch.zeros((b, width), dtype=torch.long)      # row position predicting (b, t)
        resp = torch.full((b, width), pad_id, dtype=torch.long)
        mask = torch.zeros((b, width), dtype=torch.float32)
        last: tuple[tuple[int, ...], int, int] | None = None  # (prompt, start, end) laid out
        for i, (p, r) in enumerate(zip(prompts, responses)):
            p = tuple(p)
            if not (share and last is not None and last[0] == p):
                start = len(ids)
                ids.extend(p)
                pos.extend(range(len(p)))
                segs.append((start, len(ids), start, start))
                last = (p, start, len(ids))
            _, ps, pe = last
            rs = len(ids)
            ids.extend(r)
            pos.extend(range(len(p), len(p) + len(r)))
            if r:
                segs.append((rs, len(ids), ps, pe))
                resp[i, :len(r)] = torch.tensor(r, dtype=torch.long)
                mask[i, :len(r)] = 1.0
                src[i, 0] = pe - 1
                src[i, 1:len(r)] = torch.arange(rs, rs + len(r) - 1)
        n = sum(len(r) for r in responses)
        self.shared = len(segs) - sum(1 for r in responses if r) < b
        self.rows, self.tokens = b, len(ids)
        keep, inverse = torch.unique(src[mask.bool()], return_inverse=True)
        pick = torch.zeros((b, width), dtype=torch.long)
        pick[mask.bool()] = inverse
        self.input_ids = torch.tensor([ids], dtype=torch.long, device=device)
        self.position_ids = torch.tensor([pos], dtype=torch.long, device=device)
        self.segments = segs
        self.keep, self.pick = keep.to(device), pick.to(device)
        self.response_ids, self.response_mask = resp.to(device), mask.to(device)
        self.prompt_width = 0          # log-probs of every row start at column 0
        self.sequences = [(list(p), list(r)) for p, r in zip(prompts, responses)]
        assert n == int(mask.sum())


def packed_logprobs(model: torch.nn.Module, batch: PackedBatch, temperature: float,
                    with_entropy: bool = False, autocast: Any = None
                    ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(B, R) float32 log-probs of the response tokens[, entropies], zero past each end, as
    ``torch_engine.token_logprobs`` computes them; the LM head and the softmax run on the K
    kept positions only (no (B, R, V) tensor: a packed micro-batch holds many rows)."""
    with autocast if autocast is not None else contextlib.nullcontext():
        logits = model(input_ids=batch.input_ids, position_ids=batch.position_ids,
                       r1zero_segments=batch.segments, logits_to_keep=batch.keep).logits[0]
    logits = logits.float()                                   # (K, V)
    if temperature != 1.0:
        logits = logits / temperature
    logz = torch.logsumexp(logits, dim=-1)                    # (K,)
    live = batch.response_mask.bool()
    rows = batch.pick[live]                                   # (N,) kept row of each token
    logp = torch.zeros(batch.pick.shape, dtype=torch.float32, device=logits.device)
    logp = logp.masked_scatter(live, logits[rows, batch.response_ids[live]] - logz[rows])
    ent = None
    if with_entropy:
        per_row = logz - (torch.softmax(logits, dim=-1) * logits).sum(-1)     # (K,)
        ent = torch.zeros_like(logp).masked_scatter(live, per_row[rows])
    return logp, ent


def enable(model: torch.nn.Module) -> None:
    """Route ``model``'s attention through ``packed_attention`` (same results for unpacked
    forwards: it calls the implementation the model had). Refuses, naming the key, a model
    whose attention does not go through transformers' attention interface."""
    from transformers import AttentionInterface   # heavy: transformers, imported on use
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS

    impl = model.config._attn_implementation
    if impl == ATTN_NAME:
        return
    if impl not in ("sdpa", "eager"):
        raise ConfigError(f"use_remove_padding packs through SDPA; the model's attention "
                          f"implementation is {impl!r} (load it with sdpa or eager)",
                          key="actor.use_remove_padding")
    _BASE[type(model).__name__] = impl
    AttentionInterface.register(ATTN_NAME, packed_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(ATTN_NAME, ALL_MASK_ATTENTION_FUNCTIONS[impl])
    model.set_attn_implementation(ATTN_NAME)
    model.config._r1zero_base_attn = impl


def packed_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor,
                     value: torch.Tensor, attention_mask: Any, dropout: float = 0.0,
                     scaling: float | None = None, r1zero_segments: Any = None,
                     **kwargs: Any) -> tuple[torch.Tensor, None]:
    """q (1, H, T, D), k/v (1, Hkv, T, D) -> (1, T, H, D). Each segment's queries attend to its
    prefix (all of it) and causally to itself; without segments, the model's own attention."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS   # heavy, imported on use

    if r1zero_segments is None:
        base = ALL_ATTENTION_FUNCTIONS[module.config._r1zero_base_attn]
        return base(module, query, key, value, attention_mask, dropout=dropout,
                    scaling=scaling, **kwargs)
    if kwargs.get("sliding_window"):
        raise ValueError("use_remove_padding: sliding-window attention layers are not packed")
    parts = []
    gqa = query.shape[1] != key.shape[1]
    for qs, qe, ps, pe in r1zero_segments:
        q = query[:, :, qs:qe]
        if pe == ps:
            k, v, mask = key[:, :, qs:qe], value[:, :, qs:qe], None
        else:
            k = torch.cat([key[:, :, ps:pe], key[:, :, qs:qe]], dim=2)
            v = torch.cat([value[:, :, ps:pe], value[:, :, qs:qe]], dim=2)
            n, m = qe - qs, pe - ps
            mask = torch.ones((n, m + n), dtype=torch.bool, device=query.device)
            mask[:, m:] = torch.ones((n, n), dtype=torch.bool, device=query.device).tril()
        parts.append(torch.nn.functional.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=mask is None, scale=scaling,
            dropout_p=dropout if module.training else 0.0, enable_gqa=gqa))
    return torch.cat(parts, dim=2).transpose(1, 2).contiguous(), None
