"""Rollout throughput: r1zero's Sampler against transformers ``model.generate`` in one run.

Workload of issue 5's GRPO benchmark: a tiny random Qwen2 (2 layers, hidden 128, vocab 1000),
8 prompts of 40-80 tokens x 8 samples, 64 new tokens, temperature 1.0, full-vocabulary sampling
(top-k and top-p off on both sides). With random weights the stop token is rare, so nearly
every sample runs the full 64 tokens: the worst case.

    python benchmarks/bench_sampler.py [--device cpu] [--threads N] [--repeats 5] [--warmup 1]

Runs alternate between the contenders so that load from other processes hits them alike; the
ratio uses the median of each. A third line times r1zero's loop on the model's own forward
(``path="hf"``), to show what the hand-written forward adds over the loop alone.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from r1zero.engines.sampler import Sampler

VOCAB, STOP, PAD = 1000, 999, 0


def build(device: str, seed: int = 0):
    torch.manual_seed(seed)
    cfg = Qwen2Config(vocab_size=VOCAB, hidden_size=128, intermediate_size=256,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=512, tie_word_embeddings=True)
    model = Qwen2ForCausalLM(cfg).to(device).eval()
    g = torch.Generator().manual_seed(seed)
    lens = torch.randint(40, 81, (8,), generator=g).tolist()
    prompts = [torch.randint(1, VOCAB - 1, (n,), generator=g).tolist() for n in lens]
    return model, prompts


def run_sampler(sampler, prompts, args, gen) -> tuple[float, int]:
    t = time.perf_counter()
    out = sampler.generate(prompts, args.n, args.max_new_tokens, temperature=1.0, generator=gen)
    _sync(args.device)
    return time.perf_counter() - t, sum(len(r) for r in out.response_ids)


def run_hf(model, ids, mask, args) -> tuple[float, int]:
    t = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(input_ids=ids, attention_mask=mask, do_sample=True,
                             num_return_sequences=args.n, max_new_tokens=args.max_new_tokens,
                             temperature=1.0, top_k=0, top_p=1.0, eos_token_id=STOP,
                             pad_token_id=PAD)
    _sync(args.device)
    resp = out[:, ids.shape[1]:]
    # tokens up to and including the first stop, as the sampler counts them
    stopped = (resp == STOP).int().cumsum(-1)
    return time.perf_counter() - t, int(((stopped == 0) | ((stopped == 1) & (resp == STOP))).sum())


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def left_pad(prompts, device):
    width = max(map(len, prompts))
    ids = torch.full((len(prompts), width), PAD, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, p in enumerate(prompts):
        ids[i, width - len(p):] = torch.tensor(p)
        mask[i, width - len(p):] = 1
    return ids.to(device), mask.to(device)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model, prompts = build(args.device)
    sampler = Sampler(model, [STOP], PAD)
    # the same loop on the model's own forward + DynamicCache: what the own forward buys
    via_hf_forward = Sampler(model, [STOP], PAD, path="hf")
    ids, mask = left_pad(prompts, args.device)
    gen = torch.Generator(device=args.device).manual_seed(1)
    ours, loop_hf, theirs, tok_ours, tok_theirs = [], [], [], 0, 0
    for i in range(args.warmup + args.repeats):
        t1, k1 = run_sampler(sampler, prompts, args, gen)
        t2, k2 = run_hf(model, ids, mask, args)
        t3, _ = run_sampler(via_hf_forward, prompts, args, gen)
        if i >= args.warmup:
            ours.append(t1)
            theirs.append(t2)
            loop_hf.append(t3)
            tok_ours, tok_theirs = tok_ours + k1, tok_theirs + k2
    n_seq = len(prompts) * args.n
    cps_ours, cps_hf = n_seq / statistics.median(ours), n_seq / statistics.median(theirs)
    cps_loop = n_seq / statistics.median(loop_hf)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {args.device}, "
          f"sampler path {sampler.path}")
    print(f"sizes: {len(prompts)} prompts ({min(map(len, prompts))}-{max(map(len, prompts))} "
          f"tokens) x {args.n} samples, {args.max_new_tokens} new tokens, vocab {VOCAB}; "
          f"warm-up {args.warmup}, repeats {args.repeats}; mean response tokens "
          f"r1zero {tok_ours / n_seq / args.repeats:.1f}, "
          f"HF {tok_theirs / n_seq / args.repeats:.1f}")
    print(f"runs (s): r1zero {' '.join(f'{t:.3f}' for t in ours)} | "
          f"HF {' '.join(f'{t:.3f}' for t in theirs)}")
    print(f"same loop on the model's forward (path hf): {cps_loop:.0f} completions/s "
          f"= {cps_loop / cps_hf:.1f}x HF generate")
    print(f"sampler: r1zero {cps_ours:.0f} completions/s vs HF generate {cps_hf:.0f} "
          f"completions/s = {cps_ours / cps_hf:.1f}x (median of {args.repeats})")


if __name__ == "__main__":
    main()
