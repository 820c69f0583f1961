"""Per-rank training-state memory and step time of the FSDP2 engine at 1, 2 (and 4) CPU ranks.

A random Qwen2 of ~72M parameters (hidden 512, 16 layers, vocab 32000, tied embeddings) takes
AdamW steps in fp32 on CPU ranks joined by gloo, each rank with one torch thread. Every rank
runs the same per-rank batch (4 sequences of 64 prompt + 64 response tokens), so the step time
ratio shows what sharding costs (all-gathers, reduce-scatters), not what data parallelism saves.

State memory per rank = bytes of the rank's parameters + gradients (right after backward) +
AdamW state, counted from the tensors themselves (local shards under FSDP2). The 1-rank
baseline is the single-device engine (``actor.engine: torch``), measured in the same run.

    python benchmarks/sharded_memory.py [--ranks 1 2 4] [--steps 3] [--layers 16]

Prints one line per rank count:
    sharded: 2 ranks: state memory per rank 0.52x, step time 1.21x of 1 rank
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.multiprocessing as mp

SEQS, PROMPT, RESPONSE, VOCAB = 4, 64, 64, 32000


class _Tok:
    pad_token_id = 0


def build_model(out: Path, layers: int) -> Path:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=VOCAB, hidden_size=512, intermediate_size=1536,
                      num_hidden_layers=layers, num_attention_heads=8, num_key_value_heads=4,
                      max_position_embeddings=512, tie_word_embeddings=True)
    model = Qwen2ForCausalLM(cfg)
    print(f"model: Qwen2, {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters, "
          f"{layers} layers, fp32")
    model.save_pretrained(str(out))
    return out


def _nbytes(t: torch.Tensor) -> int:
    t = t.to_local() if hasattr(t, "to_local") else t
    return t.numel() * t.element_size()


def _config(model_dir: Path, engine: str):
    from r1zero.config.load import load_config

    return load_config(None, [f"model.path={model_dir}", "model.dtype=float32",
                              f"actor.engine={engine}", "algorithm.kl_coef=0",
                              "actor.lr=1e-5"])


def measure(engine, steps: int) -> tuple[int, float]:
    """Peak state bytes of this rank and the median step time (first step excluded)."""
    from r1zero.engines.torch_engine import SeqBatch

    g = torch.Generator().manual_seed(1)
    seqs = [(torch.randint(1, VOCAB, (PROMPT,), generator=g).tolist(),
             torch.randint(1, VOCAB, (RESPONSE,), generator=g).tolist()) for _ in range(SEQS)]
    batch = SeqBatch([s[0] for s in seqs], [s[1] for s in seqs], 0, engine.device)
    params = list(engine.model.parameters())
    peak, times = 0, []
    for _ in range(steps):
        t0 = time.perf_counter()
        logp, _ = engine.logprobs(engine.model, batch, 1.0)
        engine.backward(-(logp * batch.response_mask).mean())
        grads = sum(_nbytes(p.grad) for p in params if p.grad is not None)
        engine.step(1.0)
        times.append(time.perf_counter() - t0)
        optim = sum(_nbytes(v) for s in engine.optimizer.state.values() for v in s.values()
                    if torch.is_tensor(v))
        peak = max(peak, sum(_nbytes(p) for p in params) + grads + optim)
    return peak, statistics.median(times[1:] or times)


def _rank(rank: int, world: int, port: int, model_dir: str, steps: int, out: str) -> None:
    import torch.distributed as tdist

    from r1zero.engines.fsdp import FSDPTrainEngine

    torch.set_num_threads(1)
    tdist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                             world_size=world)
    try:
        engine = FSDPTrainEngine(_config(Path(model_dir), "fsdp"), _Tok(), "cpu")
        peak, step_s = measure(engine, steps)
        res = torch.tensor([float(peak), step_s])
        tdist.all_reduce(res, op=tdist.ReduceOp.MAX)   # the largest rank, the slowest step
        if rank == 0:
            torch.save(res, Path(out) / f"ranks{world}.pt")
    finally:
        tdist.destroy_process_group()


def one_rank(model_dir: Path, steps: int) -> tuple[int, float]:
    from r1zero.engines.torch_engine import TorchTrainEngine

    torch.set_num_threads(1)
    return measure(TorchTrainEngine(_config(model_dir, "torch"), _Tok()), steps)


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ranks", type=int, nargs="+", default=[2, 4])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--layers", type=int, default=16)
    args = ap.parse_args()
    print(f"cpu: {os.cpu_count()} cores, torch {torch.__version__}, 1 thread per rank")
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_model(Path(tmp) / "model", args.layers)
        base_mem, base_s = one_rank(model_dir, args.steps)
        print(f"1 rank (torch engine): state {base_mem / 2**20:.0f} MiB, step {base_s:.2f} s")
        for world in [w for w in args.ranks if w > 1]:
            mp.spawn(_rank, args=(world, _port(), str(model_dir), args.steps, tmp), nprocs=world)
            mem, step_s = torch.load(Path(tmp) / f"ranks{world}.pt").tolist()
            print(f"{world} ranks (fsdp engine): state per rank {mem / 2**20:.0f} MiB, "
                  f"step {step_s:.2f} s")
            print(f"sharded: {world} ranks: state memory per rank {mem / base_mem:.2f}x, "
                  f"step time {step_s / base_s:.2f}x of 1 rank")


if __name__ == "__main__":
    main()
