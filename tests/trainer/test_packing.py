"""``actor.use_remove_padding``: packed micro-batches (one row, position ids restarting per
sequence, attention kept within each sequence) give the padded layout's per-token log-probs and
the same update, on the torch engine and the fsdp engine at 2 gloo ranks."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch

from r1zero.config.load import load_config
from r1zero.engines.packing import PackedBatch
from r1zero.engines.torch_engine import SeqBatch
from r1zero.trainer.batching import check_dynamic_bsz, token_budget_chunks
from tests.trainer.conftest import random_groups, recipe

SECTIONS = {"actor": {"lr": 1e-3, "clip_grad": 1e4, "global_batch_size": 4},
            "algorithm": {"kl_coef": 0.0}}


def _seqs() -> tuple[list, torch.Tensor]:
    """12 sequences: 4 prompts (lengths 6..9) x 3 samples, responses 0..15 tokens."""
    return random_groups(3, 0, 16, 1)


class _Tok:
    pad_token_id = 0


def test_packed_batch_lays_out_a_shared_prompt_once():
    pb = PackedBatch([[5, 6], [5, 6], [4]], [[7], [8, 9], [3]], 0, torch.device("cpu"))
    assert pb.input_ids.tolist() == [[5, 6, 7, 8, 9, 4, 3]]
    assert pb.position_ids.tolist() == [[0, 1, 2, 2, 3, 0, 1]]
    # prompt [0, 2) alone; responses see the prompt [0, 2) and themselves; the last prompt [5, 6)
    assert pb.segments == [(0, 2, 0, 0), (2, 3, 0, 2), (3, 5, 0, 2), (5, 6, 5, 5), (6, 7, 5, 6)]
    # logits needed at row positions 1 (predicts 7 and 8), 3 (predicts 9), 5 (predicts 3)
    assert pb.keep.tolist() == [1, 3, 5]
    assert pb.pick.tolist() == [[0, 0], [0, 1], [2, 0]]
    assert pb.response_mask.tolist() == [[1, 0], [1, 1], [1, 0]]
    unshared = PackedBatch([[5, 6], [5, 6]], [[7], [8]], 0, torch.device("cpu"), share=False)
    assert unshared.input_ids.tolist() == [[5, 6, 7, 5, 6, 8]] and not unshared.shared


def test_token_budget_counts_packed_tokens():
    lengths = [(3, 1), (3, 2), (3, 2), (5, 4)]
    assert token_budget_chunks(range(4), lengths, 10) == [[0, 1], [2], [3]]          # padded
    assert token_budget_chunks(range(4), lengths, 14, packed=True) == [[0, 1, 2], [3]]  # 4+5+5
    assert token_budget_chunks(range(4), lengths, 10, packed=True) == [[0, 1], [2], [3]]
    check_dynamic_bsz(load_config(None, ["actor.use_remove_padding=true",
                                         "actor.max_packing_token_size=64"]))


def _engines(setup, tmp_path, **actor):
    from r1zero.engines.torch_engine import TorchTrainEngine

    base = recipe(setup, tmp_path, **{**SECTIONS, "actor": {**SECTIONS["actor"], **actor}})
    return [TorchTrainEngine(load_config(None, base=base, overrides=o), _Tok())
            for o in ([], ["actor.use_remove_padding=true"])]


def test_packed_logprobs_and_entropies_equal_padded(tiny_setup, tmp_path):
    padded, packed = _engines(tiny_setup, tmp_path)
    seqs, _ = _seqs()
    p, r = [s[0] for s in seqs], [s[1] for s in seqs]
    sb, pb = SeqBatch(p, r, 0, padded.device), PackedBatch(p, r, 0, packed.device)
    assert pb.tokens < sb.input_ids.numel()
    with torch.no_grad():
        got, gent = packed.logprobs(packed.model, pb, 0.7, with_entropy=True)
        want, went = padded.logprobs(padded.model, sb, 0.7, with_entropy=True)
    mask = sb.response_mask
    assert got.shape == want.shape
    err = float(((got - want) * mask).abs().max())
    eerr = float(((gent - went) * mask).abs().max())
    print(f"packed vs padded: logp max diff {err:.2e}, entropy {eerr:.2e}")
    assert err < 1e-5 and eerr < 1e-5


def test_packed_grpo_update_equals_padded(tiny_setup, tmp_path):
    """The trainer's update (KL to the reference on, two mini-batches so the second step sees
    a nonzero KL and old log-probs, micro-batches cut by a 40-token budget: padded cost vs
    packed cost cut them differently) moves the weights the same."""
    from r1zero.trainer.grpo import GRPOTrainer

    seqs, adv = _seqs()
    moved = []
    for i, extra in enumerate(([], ["actor.use_remove_padding=true"])):
        sections = {**SECTIONS, "algorithm": {"kl_coef": 0.05},
                    "actor": {**SECTIONS["actor"], "use_dynamic_bsz": True, "mini_batch_size": 2,
                              "max_packing_token_size": 40}}
        cfg = load_config(None, base=recipe(tiny_setup, tmp_path / str(i), **sections),
                          overrides=extra)
        trainer = GRPOTrainer.from_config(cfg)
        try:
            before = {n: p.detach().clone() for n, p in trainer.engine.model.named_parameters()}
            stats = trainer.update(seqs, adv)
            moved.append(({n: p.detach() - before[n]
                           for n, p in trainer.engine.model.named_parameters()}, stats))
        finally:
            trainer.close()
    (want, s0), (got, s1) = moved
    worst = max(float((got[n] - want[n]).norm() / want[n].norm()) for n in want)
    print(f"packed vs padded update: worst rel {worst:.2e}; kl {s1.get('kl')} vs {s0.get('kl')}")
    assert worst < 1e-4 and s1["kl"] > 0
    for k in s0:
        assert s1[k] == pytest.approx(s0[k], rel=1e-4, abs=1e-7), k


def _rank(rank: int, world: int, port: int, base: dict, out: str) -> None:
    """fsdp at 2 ranks, padded then packed: one token-mean step on this rank's half."""
    import torch.distributed as tdist

    from r1zero.engines.fsdp import FSDPTrainEngine

    torch.set_num_threads(1)
    tdist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                             world_size=world)
    try:
        seqs, adv = _seqs()
        total = sum(len(s[1]) for s in seqs)
        mine = slice(rank * 6, rank * 6 + 6)
        for name, kind in (("padded", SeqBatch), ("packed", PackedBatch)):
            cfg = load_config(None, base=base,
                              overrides=[f"actor.use_remove_padding={kind is PackedBatch}"])
            engine = FSDPTrainEngine(cfg, _Tok(), "cpu")
            s = seqs[mine]
            batch = kind([x[0] for x in s], [x[1] for x in s], 0, engine.device)
            logp, _ = engine.logprobs(engine.model, batch, 1.0)
            engine.backward(-(logp * adv[mine, None] * batch.response_mask).sum() / total)
            engine.step(1e4)
            weights = {n: t.clone() for n, t in engine.full_weights()}
            if rank == 0:
                torch.save({"logp": logp.detach() * batch.response_mask, "w": weights},
                           Path(out) / f"{name}.pt")
    finally:
        tdist.destroy_process_group()


def test_fsdp_two_ranks_packed_step_equals_padded(tiny_setup, tmp_path):
    import torch.multiprocessing as mp

    from r1zero.engines.torch_engine import TorchTrainEngine

    base = recipe(tiny_setup, tmp_path, **SECTIONS)
    before = {n: t.clone() for n, t in TorchTrainEngine(load_config(None, base=base),
                                                         _Tok()).full_weights()}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_rank, args=(2, port, base, str(tmp_path)), nprocs=2, join=True)
    want, got = (torch.load(tmp_path / f"{n}.pt", weights_only=True) for n in ("padded", "packed"))
    assert float((got["logp"] - want["logp"]).abs().max()) < 1e-5
    worst = max(float((got["w"][n] - want["w"][n]).norm() / (want["w"][n] - before[n]).norm())
                for n in before)
    print(f"fsdp 2 ranks packed vs padded update: worst rel {worst:.2e}")
    assert worst < 1e-4


def test_tiny_run_trains_with_the_seed_keys(tiny_setup, tmp_path, capsys, caplog):
    """Issue 22's check: use_remove_padding + swap_optimizer + bf16 + initial_loss_scale 4096
    (no effect under bf16) train 2 steps on CPU through ``r1zero train``."""
    from r1zero.cli.main import main
    from r1zero.trainer.metrics import read_metrics
    from tests.trainer.conftest import write_recipe

    cfg = recipe(tiny_setup, tmp_path, model={"dtype": "bfloat16"},
                 rewards={"text_length": {"weight": 1.0}},    # varies for a random model
                 plugins={"modules": [str(Path(__file__).with_name("length_reward.py"))]},
                 actor={"use_remove_padding": True, "swap_optimizer": True,
                        "initial_loss_scale": 4096, "use_dynamic_bsz": True,
                        "max_packing_token_size": 96, "train_iters": 2})
    with caplog.at_level("WARNING", logger="r1zero.engines.precision"):
        assert main(["train", str(write_recipe(tmp_path / "r.yaml", cfg))]) == 0
    assert any("initial_loss_scale 4096 has no effect" in r.getMessage() for r in caplog.records)
    rows = read_metrics(tmp_path / "logs" / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2]
    assert all(r["actor/grad_norm"] > 0 for r in rows)
    # the packed bf16 actor scores the rollout's tokens as the sampler's bf16 copy does
    assert all(r["rollout/logprob_diff_max"] < 0.05 for r in rows)
