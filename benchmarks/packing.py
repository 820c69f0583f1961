"""Packed (``actor.use_remove_padding``) vs padded GRPO update step on the torch engine.

A random Qwen2 (hidden 256, 2 layers, 8 heads / 2 kv heads, vocab 8000, fp32 on CPU) runs one
GRPO update step over the same rollout both ways: the reference log-probs (forward, no grad),
then the actor's forward + backward per micro-batch and one AdamW step. Micro-batches are cut
by the same token budget (``max_packing_token_size``, default 4096) over the trainer's order
(by prompt, then response length): padded, the budget counts padding
(``use_dynamic_bsz``); packed, real tokens.

The rollout: 4 prompts of 40..120 tokens (uniform), 8 samples each, response lengths drawn
from a log-normal (median 120 tokens, sigma 0.9) clipped to [4, 768]: long-tailed as GRPO's
are (most samples short, a few at the cap). Each variant runs in its own process (peak
resident memory, minus that of a process that only built the engine, is the step's peak);
tokens/s counts real tokens (prompt + response) per second of update step, median of
``--steps``.

    python benchmarks/packing.py [--steps 2] [--budget 4096] [--threads 2]

Prints (measured on the shared 2-core CPU machine, --steps 1, 2026-12-08):
    padded: 66.38 s/step, 132 tokens/s, 5 micro-batches, 15733 positions for 8762 tokens, step peak 902 MiB
    packed: 38.30 s/step, 229 tokens/s, 3 micro-batches, 6318 positions for 8762 tokens, step peak 838 MiB
    packing: 1.73x tokens/s, 0.93x peak memory of padded (Qwen2 h256 x2 layers, ...)
Peak memory is about equal by design: the budget caps a micro-batch's positions either way,
and packed micro-batches hold more sequences (3 micro-batches instead of 5).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

PROMPTS, SAMPLES, VOCAB = 4, 8, 8000
MODEL = "Qwen2 h256 x2 layers, vocab 8000, fp32 CPU"
LENGTHS = f"{PROMPTS} prompts U[40,120] x {SAMPLES} samples, responses lognormal(median 120, sigma 0.9) in [4,768]"


def rollout(seed: int = 0) -> list[tuple[list[int], list[int]]]:
    g = torch.Generator().manual_seed(seed)
    seqs = []
    for _ in range(PROMPTS):
        prompt = torch.randint(5, VOCAB, (int(torch.randint(40, 121, (1,), generator=g)),),
                               generator=g).tolist()
        for _ in range(SAMPLES):
            n = float(torch.exp(torch.randn((), generator=g) * 0.9) * 120)
            n = int(min(768, max(4, n)))
            seqs.append((prompt, torch.randint(5, VOCAB, (n,), generator=g).tolist()))
    return seqs


def build_model(out: Path) -> Path:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=VOCAB, hidden_size=256, intermediate_size=704,
                      num_hidden_layers=2, num_attention_heads=8, num_key_value_heads=2,
                      max_position_embeddings=2048, tie_word_embeddings=True)
    Qwen2ForCausalLM(cfg).save_pretrained(str(out))
    return out


class _Tok:
    pad_token_id = 0


def child(model: str, packed: bool | None, steps: int, budget: int, threads: int) -> dict:
    """One variant (None: build only) in this process; -> seconds per step, tokens, peak KiB."""
    from r1zero.config.load import load_config
    from r1zero.engines.packing import PackedBatch
    from r1zero.engines.torch_engine import SeqBatch, TorchTrainEngine
    from r1zero.trainer.batching import token_budget_chunks

    torch.set_num_threads(threads)
    over = [f"model.path={model}", "algorithm.kl_coef=0.001", "actor.clip_grad=1.0",
            f"actor.max_packing_token_size={budget}", "actor.use_dynamic_bsz=true",
            f"actor.use_remove_padding={str(bool(packed)).lower()}"]
    engine = TorchTrainEngine(load_config(None, over), _Tok())
    seqs = rollout()
    if packed is None:
        return {"peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}
    order = sorted(range(len(seqs)), key=lambda i: (len(seqs[i][0]), seqs[i][0], len(seqs[i][1])))
    chunks = token_budget_chunks(order, [(len(p), len(r)) for p, r in seqs], budget, packed)
    kind = PackedBatch if packed else SeqBatch
    batches = [kind([seqs[i][0] for i in c], [seqs[i][1] for i in c], 0, engine.device)
               for c in chunks]
    total = sum(len(r) for _, r in seqs)
    adv = torch.randn(len(seqs), generator=torch.Generator().manual_seed(1))
    times = []
    for _ in range(steps + 1):                      # the first step warms up
        t0 = time.perf_counter()
        with torch.no_grad():
            refs = [engine.logprobs(engine.ref, b, 1.0)[0] for b in batches]
        for c, b, ref in zip(chunks, batches, refs):
            logp, ent = engine.logprobs(engine.model, b, 1.0, with_entropy=True)
            m = b.response_mask
            kl = (torch.exp(ref - logp) - (ref - logp) - 1) * m
            loss = (-(logp * adv[c, None]) * m + 0.001 * kl - 0.0 * ent).sum() / total
            engine.backward(loss)
        engine.step(1.0)
        times.append(time.perf_counter() - t0)
    tokens = sum(len(p) + len(r) for p, r in seqs)
    return {"s": statistics.median(times[1:]), "tokens": tokens, "micro_batches": len(chunks),
            "positions": sum(b.input_ids.numel() for b in batches),
            "peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}


def run(model: Path, variant: str, args) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", variant, "--model", str(model),
                          "--steps", str(args.steps), "--budget", str(args.budget),
                          "--threads", str(args.threads)],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--budget", type=int, default=4096)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--child", choices=["build", "padded", "packed"])
    ap.add_argument("--model")
    args = ap.parse_args()
    if args.child:
        packed = {"build": None, "padded": False, "packed": True}[args.child]
        print(json.dumps(child(args.model, packed, args.steps, args.budget, args.threads)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        model = build_model(Path(tmp) / "model")
        base = run(model, "build", args)["peak_kib"]
        pad, pk = run(model, "padded", args), run(model, "packed", args)
    speed = (pk["tokens"] / pk["s"]) / (pad["tokens"] / pad["s"])
    mem = (pk["peak_kib"] - base) / (pad["peak_kib"] - base)
    for name, r in (("padded", pad), ("packed", pk)):
        print(f"{name}: {r['s']:.2f} s/step, {r['tokens'] / r['s']:.0f} tokens/s, "
              f"{r['micro_batches']} micro-batches, {r['positions']} positions for "
              f"{r['tokens']} tokens, step peak {(r['peak_kib'] - base) / 1024:.0f} MiB")
    print(f"packing: {speed:.2f}x tokens/s, {mem:.2f}x peak memory of padded "
          f"({MODEL}; {LENGTHS}; budget {args.budget} tokens)")


if __name__ == "__main__":
    main()
