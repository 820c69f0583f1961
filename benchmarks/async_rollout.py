"""Steps/s and tokens/s of rollout.mode one_step_off and async, as ratios to sync, one run.

Workload: the demo's arithmetic prompts in the ``r1_demo`` template, 8 prompts x 8 samples per
step, at most 48 new tokens (a random model runs them all: every step generates the same
amount), temperature 1, KL 0.001 (k3, frozen reference), float32, one optimizer step per
step. Model: a random Qwen2 of ``--hidden`` x ``--layers`` (default 256 x 4, ~4M parameters
with a 320-token vocabulary) -- the shape where, on this 2-core machine, a step's generation and
its update (with the reference forward) cost about the same (sync's timing lines say how much
each took); the 0.5B Qwen2.5 shape takes minutes a step on 2 cores.

    python benchmarks/async_rollout.py [--steps 6] [--warmup 2] [--rounds 2] [--cores 2]

The three modes run in one process, in rounds (sync, one_step_off, async, sync, ...) so that
load from other processes hits them alike; each run times its steps after ``--warmup``
(step 1 of an overlapped mode generates alone) and before the last (which saves). sync uses
``--cores`` torch threads; the overlapped modes split them (backend.rollout_threads = half).
A second baseline, sync on one thread, is printed too: on a machine other processes keep
busy, a multi-threaded sync step loses time to descheduled OpenMP threads, which flatters the
ratios against the ``--cores`` baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

PROMPTS, SAMPLES, MAX_NEW = 8, 8, 48


def build_model(out: Path, hidden: int, layers: int, seed: int = 0) -> Path:
    """Tokenizer trained on demo problems + a random Qwen2 (layers x hidden), saved to ``out``."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from r1zero.demo.arith import demo_records
    from r1zero.demo.tokenizer import train_tokenizer

    recs = demo_records(2000, seed=seed)
    tok = train_tokenizer([r["problem"] + " " + r["solution"] for r in recs], 320, out)
    torch.manual_seed(seed)
    cfg = Qwen2Config(vocab_size=len(tok), hidden_size=hidden, intermediate_size=4 * hidden,
                      num_hidden_layers=layers, num_attention_heads=max(1, hidden // 64),
                      num_key_value_heads=max(1, hidden // 64), max_position_embeddings=256,
                      tie_word_embeddings=True, bos_token_id=tok.bos_token_id,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    model = Qwen2ForCausalLM(cfg)
    model.save_pretrained(str(out), safe_serialization=True)
    return out


def recipe(work: Path, model: Path, data: Path, mode: str, threads: int, rollout_threads,
           iters: int, tag: str):
    from r1zero.config.load import load_config

    backend = {"name": "cpu", "num_threads": threads}
    if rollout_threads:
        backend["rollout_threads"] = rollout_threads
    base = {
        "name": f"async_{tag}", "model": {"path": str(model), "dtype": "float32"},
        "data": {"input": str(data), "output": str(work / "prep"), "workers": 1},
        "template": {"name": "r1_demo"}, "rewards": {"base_acc": {"weight": 1.0}},
        "scoring": {"workers": 1}, "backend": backend,
        "algorithm": {"kl_penalty": "k3", "kl_coef": 0.001, "clip_ratio": 0.2},
        "rollout": {"n_samples_per_prompt": SAMPLES, "max_prompt_length": 128,
                    "max_response_length": MAX_NEW, "mode": mode},
        "actor": {"lr": 1e-6, "global_batch_size": PROMPTS, "micro_batch_size": 64,
                  "train_iters": iters, "seed": 0},
        "checkpoint": {"dir": str(work / tag / "ckpt"), "save_interval": 0, "keep_last": 1},
        "logging": {"dir": str(work / tag / "logs"), "tensorboard": False, "plots": False,
                    "progress": False},
    }
    return load_config(None, [], base=base)


def timed_run(cfg, warmup: int, steps: int) -> dict:
    """Seconds and generated tokens over steps warmup+1 .. warmup+steps, and sync's split."""
    from r1zero.trainer.grpo import GRPOTrainer

    marks, tokens, parts = {}, 0, {}

    def on_step(step: int, m: dict) -> None:
        nonlocal tokens
        marks[step] = time.perf_counter()
        if warmup < step <= warmup + steps:
            tokens += m["response_length/mean"] * PROMPTS * SAMPLES
            for k in ("rollout", "reward", "update", "reference", "wait_rollout"):
                parts.setdefault(k, []).append(m.get(f"timing/{k}", 0.0))

    trainer = GRPOTrainer.from_config(cfg)
    try:
        trainer.run(on_step=on_step)
    finally:
        trainer.close()
    seconds = marks[warmup + steps] - marks[warmup]
    return {"s": seconds, "tokens": tokens, "parts": {k: statistics.median(v)
                                                     for k, v in parts.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--work", default=None)
    args = ap.parse_args()
    from r1zero.demo.arith import demo_records

    work = Path(args.work or tempfile.mkdtemp(prefix="async_bench_"))
    model = build_model(work / "model", args.hidden, args.layers)
    iters = args.warmup + args.steps + 1
    data = work / "problems.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in demo_records(PROMPTS * iters * 3, 1)))
    half = max(1, args.cores // 2)
    runs = {"sync": ("sync", args.cores, None), "sync_1thread": ("sync", 1, None),
            "one_step_off": ("one_step_off", args.cores, half),
            "async": ("async", args.cores, half)}
    got: dict[str, list] = {k: [] for k in runs}
    load0 = os.getloadavg()[0]
    for r in range(args.rounds):
        for tag, (mode, threads, rt) in runs.items():
            cfg = recipe(work, model, data, mode, threads, rt, iters, f"{tag}_{r}")
            res = timed_run(cfg, args.warmup, args.steps)
            got[tag].append(res)
            print(f"round {r} {tag:13s} {args.steps / res['s']:.3f} steps/s "
                  f"{res['tokens'] / res['s']:.0f} tokens/s  median step parts "
                  + " ".join(f"{k} {v:.2f}s" for k, v in res["parts"].items()), flush=True)
    load1 = os.getloadavg()[0]
    rate = {k: args.steps * len(v) / sum(x["s"] for x in v) for k, v in got.items()}
    toks = {k: sum(x["tokens"] for x in v) / sum(x["s"] for x in v) for k, v in got.items()}
    desc = (f"random Qwen2 {args.layers}x{args.hidden}, {args.rounds}x{args.steps} steps, "
            f"{args.cores} cores, load {load0:.1f}->{load1:.1f}")
    for base in ("sync", "sync_1thread"):
        print(f"tokens/s vs {base}: one_step_off {toks['one_step_off'] / toks[base]:.2f}x, "
              f"async {toks['async'] / toks[base]:.2f}x")
    print(f"vs sync on 1 thread: one_step_off {rate['one_step_off'] / rate['sync_1thread']:.2f}x,"
          f" async {rate['async'] / rate['sync_1thread']:.2f}x of its steps/s")
    print(f"async: one_step_off {rate['one_step_off'] / rate['sync']:.2f}x, "
          f"async {rate['async'] / rate['sync']:.2f}x of sync steps/s ({desc})")


if __name__ == "__main__":
    main()
