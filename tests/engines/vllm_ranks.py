"""Worker of ``test_vllm_ranks.py``: two gloo ranks share ONE vLLM engine (rollout
tensor_parallel 2: one instance of 2 ranks, vLLM's own 2 tensor-parallel CPU workers). Rank 0
holds it; rank 1 holds a ``WeightRelay`` (no rollout model), which takes its part in the
collective ``full_weights()`` gather while rank 0 pushes the buckets into vLLM.

The actor is, in turn, the fsdp engine (dp 2), the megatron engine at tensor parallel 2 and at
pipeline parallel 2. For each: sync, then ``STEPS`` optimizer steps each followed by a sync;
after every sync the actor's log-probs of ``SEQS`` (on every rank that computes them) and
vLLM's (rank 0) are saved to ``out_dir/rank{r}.pt`` for the test to compare."""

from __future__ import annotations

from pathlib import Path

import torch

SEQS = [[5, 17, 40, 9, 77, 120, 3, 64, 200], [30, 31, 32, 33, 34, 35], [250, 8, 8, 8, 90, 91, 7]]
PROMPT = 4
STEPS = 2
LAYOUTS = {"fsdp": ["actor.engine=fsdp"],
           "megatron_tp2": ["actor.engine=megatron", "actor.tensor_parallel=2"],
           "megatron_pp2": ["actor.engine=megatron", "actor.pipeline_parallel=2"]}


def base(model_dir: str) -> dict:
    return {"model": {"path": model_dir, "dtype": "float32"},
            "rollout": {"max_prompt_length": 32, "max_response_length": 8, "engine": "vllm",
                        "n_samples_per_prompt": 2, "max_num_seqs": 8,
                        "tensor_parallel": 2},     # one instance of 2: vLLM TP 2 on rank 0
            "actor": {"lr": 1e-2, "seed": 7, "micro_batch_size": 3},
            "algorithm": {"kl_coef": 0.0}}


def batch(pad_id: int):
    from r1zero.engines.torch_engine import SeqBatch

    return SeqBatch([s[:PROMPT] for s in SEQS], [s[PROMPT:] for s in SEQS], pad_id,
                    torch.device("cpu"))


def build(name: str, cfg, tok):
    if name == "fsdp":
        from r1zero.engines.fsdp import FSDPTrainEngine

        return FSDPTrainEngine(cfg, tok, "cpu")
    from r1zero.engines.megatron.engine import MegatronTrainEngine

    return MegatronTrainEngine(cfg, tok)


def actor_logprobs(name: str, engine) -> list[list[float]] | None:
    """The actor's log-probs of SEQS' responses (collective); None off megatron's last stage."""
    b = batch(engine.pad_id)
    with torch.no_grad():
        if name == "fsdp":
            logp = engine.logprobs(engine.model, b, 1.0)[0]
        else:
            out = engine.logprobs_of([b], 1.0)
            if out is None:
                return None
            logp = out[0]
    return [logp[i, :len(s) - PROMPT].tolist() for i, s in enumerate(SEQS)]


def optimizer_step(name: str, engine, seed: int) -> None:
    """One policy-gradient step on random advantages of SEQS."""
    adv = torch.randn(len(SEQS), generator=torch.Generator().manual_seed(seed))
    b = batch(engine.pad_id)
    if name == "fsdp":
        logp, _ = engine.logprobs(engine.model, b, 1.0)
        engine.backward(-(logp * adv[:, None] * b.response_mask).sum() / b.response_mask.sum())
    else:
        def loss_fn(i, logp, ent):
            loss = -(logp * adv[:, None] * b.response_mask).sum() / b.response_mask.sum()
            return loss, {}
        engine.forward_backward([b], 1.0, loss_fn)
    engine.step(1e4)


def run(rank: int, world: int, port: int, model_dir: str, out_dir: str) -> None:
    from tests.megatron.workers import join

    join(rank, world, port)
    from transformers import AutoTokenizer

    from r1zero.config.load import load_config
    from r1zero.engines.rollout import WeightRelay

    tok = AutoTokenizer.from_pretrained(model_dir)
    vllm, records = None, {}
    try:
        for name, overrides in LAYOUTS.items():
            cfg = load_config(None, overrides, base=base(model_dir))
            engine = build(name, cfg, tok)
            if rank == 0:
                if vllm is None:
                    from r1zero.engines.vllm import VLLMRolloutEngine

                    vllm = VLLMRolloutEngine(cfg, engine, tok, [(tok.eos_token_id,)], "cpu")
                vllm.train_engine = engine
                rollout = vllm
            else:
                rollout = WeightRelay(cfg, engine)
                assert not hasattr(rollout, "model") and not hasattr(rollout, "llm")
            rec = []
            for step in range(STEPS + 1):
                if step:
                    optimizer_step(name, engine, step)
                rollout.sync_weights()
                scored = [r[PROMPT - 1:] for r in vllm.score(SEQS)] if rank == 0 else None
                rec.append({"actor": actor_logprobs(name, engine), "vllm": scored})
            records[name] = rec
        if rank == 0:
            records["vllm_workers"] = len(vllm.worker_rss())    # one entry per vLLM worker
            del engine
        torch.save(records, Path(out_dir) / f"rank{rank}.pt")
    finally:
        if vllm is not None:
            vllm.close()
        torch.distributed.destroy_process_group()
