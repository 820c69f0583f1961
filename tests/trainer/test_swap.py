"""``actor.swap_optimizer``: the optimizer state on the host, the step in parts, the same
update as one step (bit-identical on CPU)."""

from __future__ import annotations

import torch

from r1zero.config.load import load_config
from r1zero.config.memory import SWAP_CHUNKS
from r1zero.engines.swap import parts
from tests.trainer.conftest import recipe


def test_parts_cut_by_numel_in_order():
    ps = [torch.zeros(4) for _ in range(4)]
    assert [[id(p) for p in c] for c in parts(ps, 2)] == [[id(ps[0]), id(ps[1])],
                                                           [id(ps[2]), id(ps[3])]]
    big = [torch.zeros(100), torch.zeros(1), torch.zeros(1)]
    assert [len(c) for c in parts(big, 2)] == [1, 2]       # target 51: 100 alone, then 1 + 1
    forty = parts([torch.zeros(1)] * 40)        # ceil(40 / 16) = 3 per part -> 13 x 3 + 1
    assert len(forty) == 14 <= SWAP_CHUNKS and max(len(c) for c in forty) == 3


def test_swapped_update_is_bit_identical(tiny_setup, tmp_path):
    """Two GRPO updates (2 mini-batches each: Adam state exists by the second) with and
    without swap_optimizer: weights and Adam moments equal bit for bit."""
    from r1zero.trainer.grpo import GRPOTrainer

    g = torch.Generator().manual_seed(0)
    prompt = torch.randint(5, 300, (7,), generator=g).tolist()
    seqs = [(prompt, torch.randint(5, 300, (n,), generator=g).tolist()) for n in (3, 9, 1, 6)]
    adv = torch.tensor([1.0, -0.5, 0.25, -0.75])
    got = []
    for i, swap in enumerate((False, True)):
        sections = {"actor": {"lr": 1e-3, "clip_grad": 1.0, "global_batch_size": 2,
                              "mini_batch_size": 1, "weight_decay": 0.1}}
        cfg = load_config(None, base=recipe(tiny_setup, tmp_path / str(i), **sections),
                          overrides=[f"actor.swap_optimizer={str(swap).lower()}"])
        trainer = GRPOTrainer.from_config(cfg)
        try:
            opt = trainer.engine.optimizer
            assert getattr(opt, "swaps_state", False) == swap
            trainer.update(seqs, adv)
            trainer.update(seqs, -adv)
            state = [v.clone() for s in opt.state.values() for v in s.values() if v.dim()]
            assert state and all(v.device.type == "cpu" for v in state)
            got.append(([p.detach().clone() for p in trainer.engine.model.parameters()], state))
        finally:
            trainer.close()
    (w0, s0), (w1, s1) = got
    assert all(torch.equal(a, b) for a, b in zip(w0, w1))
    assert len(s0) == len(s1) and all(torch.equal(a, b) for a, b in zip(s0, s1))
