"""Packed micro-batches for the megatron engine (``actor.use_remove_padding``).

megatron-core's local layer spec (no TransformerEngine) computes attention as dense scores
masked by the ``attention_mask`` it is given ([b, 1, s, s], True where a query may not see a
key; ``DotProductAttention`` applies it as is), and applies rotary embeddings by row position
0..s-1, not by ``position_ids``. So a row of whole sequences laid end to end, with a
block-diagonal causal mask, gives each token the scores it has alone: the mask keeps attention
within its sequence, and rotary scores depend on the distance between two positions only (the
same shift for every token of a sequence). Prompts are not shared between rows here (a
response laid after another would sit at a different distance from its prompt).

The packed THD format (``PackedSeqParams``, varlen kernels) needs TransformerEngine's layer
spec, which this engine does not build; on the local spec the mask is what carries packing.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch


def pack_rows(batches: Sequence[Any], pad_id: int, device: torch.device, multiple: int = 1,
              common: bool = True) -> list[dict]:
    """One row per ``PackedBatch``: its sequences (prompt + response) end to end, padded on
    the right to a multiple of ``multiple`` (and, ``common``, to the widest row: a pipeline
    without variable shapes). ``gather`` (B, R): the row position whose logits predict
    response token t of sequence b; ``targets`` (B, R) those tokens (0 past the end).
    E.g. sequences ([5, 6], [7, 8]), ([4], [3]): ids [5, 6, 7, 8, 4, 3], positions
    [0, 1, 2, 3, 0, 1], gather [[1, 2], [4, 0]]; token 4 sees only itself."""
    widths = [sum(len(p) + len(r) for p, r in b.sequences) for b in batches]
    top = max(widths)
    out = []
    for b, w in zip(batches, widths):
        w = (top if common else w)
        w += -w % multiple
        ids = torch.full((1, w), pad_id, dtype=torch.long)
        pos = torch.zeros((1, w), dtype=torch.long)
        seg = torch.full((w,), -1, dtype=torch.long)        # padding: its own segment
        rmax = max(1, max(len(r) for _, r in b.sequences))
        gather = torch.zeros((len(b.sequences), rmax), dtype=torch.long)
        targets = torch.zeros((len(b.sequences), rmax), dtype=torch.long)
        at = 0
        for i, (p, r) in enumerate(b.sequences):
            n = len(p) + len(r)
            ids[0, at:at + n] = torch.tensor(p + r, dtype=torch.long)
            pos[0, at:at + n] = torch.arange(n)
            seg[at:at + n] = i
            if r:
                gather[i, :len(r)] = torch.arange(at + len(p) - 1, at + n - 1)
                targets[i, :len(r)] = torch.tensor(r, dtype=torch.long)
            at += n
        causal = torch.ones(w, w, dtype=torch.bool).tril()
        allowed = causal & (seg[:, None] == seg[None, :])
        out.append({"input_ids": ids.to(device), "position_ids": pos.to(device),
                    "attention_mask": (~allowed)[None, None].to(device),
                    "rows": len(b.sequences), "gather": gather.to(device),
                    "targets": targets.to(device)})
    return out
