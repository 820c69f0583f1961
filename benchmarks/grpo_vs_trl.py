"""GRPO step throughput and peak memory: r1zero's GRPOTrainer against TRL's GRPOTrainer, one run.

Workload of issue 5: a tiny Qwen2 (2 layers, hidden 128), the demo's arithmetic prompts in the
``r1_demo`` template, 8 prompts x 8 samples per step, at most 64 new tokens, temperature 1.0
(no top-k / top-p), KL coefficient 0.001 (k3, frozen reference), lr 1e-6, clipped loss with
eps 0.2 and token-mean aggregation, one optimizer step per generation batch, float32 on CPU.
Reward: r1zero's ``base_acc``, through r1zero's scoring pool on one side and called
in-process by a TRL reward function on the other.

    pip install -e '.[bench]'
    python benchmarks/grpo_vs_trl.py [--model random|demo] [--warmup 2] [--steps 6] [--threads 1]

``--model random``: a randomly initialised model with a tokenizer trained here on the demo's
problems (built in seconds; responses mostly run the full 64 tokens: the worst case).
``--model demo``: the cached base model of ``r1zero demo`` (built on first use, minutes).

Each framework runs in its own subprocess, so each one's peak RSS (VmHWM) is its own. The two
run in lockstep -- one GRPO step of r1zero, then one of TRL (the order flips every step), the
other waiting on a pipe -- so load from other processes on a shared machine hits both alike.
Both start from the same weights and get the same prompts in the same order (the token ids
are checked). Completions/s = 64 / median step wall time over the measured steps.
Torch threads default to 1 for both: on a CPU that other processes keep busy, more than one
thread per process makes each step wait on descheduled threads and both sides slow down many
times over (measured: 10-40x on a 2-core machine at load 3-5); raise ``--threads`` on an idle one.
TRL keeps its own defaults where the workload does not fix a knob (gradient checkpointing on);
r1zero uses micro-batches of ``--r1zero-micro-batch`` sequences (one optimizer step either way).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROMPTS, SAMPLES, MAX_NEW = 8, 8, 64
MARK = "GRPO_VS_TRL "


# -- shared setup (parent) -------------------------------------------------------------------

def build_random_model(out: Path, seed: int = 0) -> Path:
    """Tokenizer trained on demo problems + a random Qwen2 (2 x 128), saved to ``out``."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from r1zero.demo.arith import demo_records
    from r1zero.demo.tokenizer import train_tokenizer

    if (out / "config.json").is_file():
        return out
    recs = demo_records(2000, seed=seed)
    tok = train_tokenizer([r["problem"] + " " + r["solution"] for r in recs], 320, out)
    torch.manual_seed(seed)
    cfg = Qwen2Config(vocab_size=len(tok), hidden_size=128, intermediate_size=512,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                      max_position_embeddings=256, tie_word_embeddings=True,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id)
    model = Qwen2ForCausalLM(cfg)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(str(out), safe_serialization=True)
    return out


def r1zero_config(spec: dict):
    """The r1zero recipe of this workload (also used to preprocess the prompts once)."""
    from r1zero.config.load import load_config

    work = Path(spec["work"])
    steps = spec["warmup"] + spec["steps"] + 1  # +1: the final step also saves; never timed
    base = {
        "name": "grpo_vs_trl",
        "model": {"path": spec["model"], "dtype": "float32"},
        "data": {"input": spec["data"], "output": str(work / "prep"), "workers": 1,
                 "shuffle": False},
        "template": {"name": "r1_demo"},
        "rewards": {"base_acc": {"weight": 1.0}},
        "scoring": {"workers": spec["scoring_workers"]},
        "backend": {"name": "cpu", "num_threads": spec["threads"]},
        "algorithm": {"kl_penalty": "k3", "kl_coef": 0.001, "clip_ratio": 0.2,
                      "loss_agg": "token-mean", "adv_estimator": "group_norm"},
        "rollout": {"n_samples_per_prompt": SAMPLES, "temperature": 1.0, "top_p": 1.0,
                    "top_k": -1, "max_prompt_length": 128, "max_response_length": MAX_NEW},
        "actor": {"lr": 1e-6, "global_batch_size": PROMPTS, "micro_batch_size": spec["micro_batch"],
                  "train_iters": steps, "seed": spec["seed"], "clip_grad": 1.0,
                  "weight_decay": 0.0, "adam_beta2": 0.95},
        "checkpoint": {"dir": str(work / "r1zero_ckpt"), "save_interval": 0, "keep_last": 1},
        "logging": {"dir": str(work / "r1zero_logs"), "tensorboard": False, "plots": False,
                    "progress": False},
    }
    return load_config(None, [], base=base)


def prepare(args: argparse.Namespace, work: Path) -> dict:
    """Model, problems, preprocessed prompts and the TRL prompt file; returns the worker spec."""
    from r1zero.demo.arith import demo_records

    if args.model == "demo":
        from r1zero.demo.basemodel import build_base_model
        from r1zero.demo.run import cache_dir

        model = build_base_model(cache_dir(), seed=0, log=lambda *a: print("[pretrain]", *a))
    else:
        model = build_random_model(work / "model")
    n_rows = PROMPTS * (args.warmup + args.steps + 1)
    data = work / "problems.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in demo_records(n_rows, seed=1)))
    spec = {"work": str(work), "model": str(model), "data": str(data), "warmup": args.warmup,
            "steps": args.steps, "threads": args.threads, "seed": 0,
            "scoring_workers": args.scoring_workers, "micro_batch": args.r1zero_micro_batch,
            "trl_grad_ckpt": not args.trl_no_grad_ckpt,
            "trl_prompts": str(work / "trl_prompts.jsonl")}
    _write_trl_prompts(spec)
    (work / "spec.json").write_text(json.dumps(spec, indent=1))
    return spec


def _write_trl_prompts(spec: dict) -> None:
    """r1zero's preprocessed prompts, decoded back to text for TRL (ids re-checked in TRL's worker)."""
    from transformers import AutoTokenizer

    from r1zero.data.pipeline import from_config, prepare
    from r1zero.data.prompts import load_dataset, output_dir

    cfg = r1zero_config(spec)
    prepare(from_config(cfg), force=True)  # a reused --workdir may hold other problems
    tok = AutoTokenizer.from_pretrained(spec["model"])
    rows = load_dataset(output_dir(cfg)).rows
    with open(spec["trl_prompts"], "w", encoding="utf-8") as fh:
        for r in rows:
            text = tok.decode(r.input_ids, skip_special_tokens=False)
            fh.write(json.dumps({"prompt": text, "ground_truth": r.ground_truth,
                                 "input_ids": r.input_ids}) + "\n")


# -- workers (subprocesses): "ready", then per step wait for "go" and report "step" ----------

def _say(kind: str, payload: dict) -> None:
    print(MARK + kind + " " + json.dumps(payload), flush=True)


def _wait_go() -> float:
    if sys.stdin.readline().strip() != "go":
        raise SystemExit("benchmark parent went away")
    return time.perf_counter()


def peak_rss_mb(pid: int | str = "self") -> float:
    """Peak resident set (VmHWM) of a process, MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def descendants_mb() -> dict:
    """Peak RSS and current PSS (shared pages split) summed over this process's descendants."""
    parent = {}
    for d in Path("/proc").iterdir():
        try:
            stat = (d / "stat").read_text()
            parent[int(d.name)] = int(stat.rsplit(")", 1)[1].split()[1])
        except (ValueError, OSError, IndexError):
            continue
    mine, frontier = [], [os.getpid()]
    while frontier:
        kids = [p for p, pp in parent.items() if pp in frontier]
        mine, frontier = mine + kids, kids
    peak = pss = 0.0
    for pid in mine:
        try:
            peak += peak_rss_mb(pid)
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
            pss += sum(int(x.split()[1]) for x in rollup if x.startswith("Pss:")) / 1024
        except OSError:
            continue
    return {"n": len(mine), "peak_rss_mb": peak, "pss_mb": pss}


def worker_r1zero(spec: dict) -> dict:
    import torch

    from r1zero.trainer.grpo import GRPOTrainer

    total = spec["warmup"] + spec["steps"] + 1
    trainer = GRPOTrainer.from_config(r1zero_config(spec))
    _say("ready", {"sampler": trainer.rollout.sampler.path, "threads": torch.get_num_threads()})
    go = [_wait_go()]

    def on_step(step: int, m: dict) -> None:
        phases = {k: m.get(f"timing/{k}", 0.0) for k in ("rollout", "reward", "reference", "update")}
        _say("step", {"wall": time.perf_counter() - go[0], "resp_len": m["response_length/mean"],
                      "reward": m["reward/mean"], "phases": phases})
        if step < total:
            go[0] = _wait_go()

    try:
        trainer.run(on_step=on_step)
        kids = descendants_mb()
    finally:
        trainer.close()
    return {"peak_rss_mb": peak_rss_mb(), "children": kids, "threads": torch.get_num_threads()}


def worker_trl(spec: dict) -> dict:
    import torch
    import trl
    from datasets import Dataset
    from transformers import AutoTokenizer, TrainerCallback

    from r1zero.host.manager import get_host
    from r1zero.host.registry import get_reward

    torch.set_num_threads(spec["threads"])
    rows = [json.loads(x) for x in Path(spec["trl_prompts"]).read_text().splitlines()]
    tok = AutoTokenizer.from_pretrained(spec["model"])
    if any(tok(r["prompt"])["input_ids"] != r["input_ids"] for r in rows):
        raise SystemExit("TRL would tokenize the prompts differently from r1zero; not comparable")
    scorer = get_reward("base_acc", host=get_host())

    def base_acc(completions, ground_truth, **_):
        return [scorer.score(c, g, {})["reward"] for c, g in zip(completions, ground_truth)]

    box: dict = {}

    class Lockstep(TrainerCallback):
        def on_step_begin(self, *a, **k):
            box["go"] = _wait_go()

        def on_step_end(self, *a, **k):
            wall = time.perf_counter() - box["go"]
            logged = box["trainer"]._metrics["train"]  # per-step lists; cleared only by logging (off)
            _say("step", {"wall": wall, "resp_len": logged["completions/mean_length"][-1],
                          "reward": logged["reward"][-1], "threads": torch.get_num_threads()})

    data = Dataset.from_list([{"prompt": r["prompt"], "ground_truth": r["ground_truth"]} for r in rows])
    trainer = box["trainer"] = trl.GRPOTrainer(
        model=spec["model"], reward_funcs=base_acc, args=_trl_args(spec), processing_class=tok,
        train_dataset=data, callbacks=[Lockstep()])
    _say("ready", {"trl": trl.__version__, "threads": torch.get_num_threads()})
    trainer.train()
    return {"peak_rss_mb": peak_rss_mb(), "children": descendants_mb(),
            "threads": torch.get_num_threads()}


def _trl_args(spec: dict):
    from trl import GRPOConfig

    return GRPOConfig(
        output_dir=str(Path(spec["work"]) / "trl_out"), use_cpu=True, report_to="none",
        logging_strategy="no", save_strategy="no", disable_tqdm=True,
        max_steps=spec["warmup"] + spec["steps"] + 1, seed=spec["seed"],
        per_device_train_batch_size=PROMPTS * SAMPLES, gradient_accumulation_steps=1,
        generation_batch_size=PROMPTS * SAMPLES, num_generations=SAMPLES,
        max_completion_length=MAX_NEW, temperature=1.0, top_p=1.0, top_k=0,
        beta=0.001, epsilon=0.2, loss_type="dapo", scale_rewards="group", num_iterations=1,
        learning_rate=1e-6, lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0,
        adam_beta2=0.95, max_grad_norm=1.0, use_vllm=False, shuffle_dataset=False,
        gradient_checkpointing=spec["trl_grad_ckpt"], dataloader_num_workers=0,
        bf16=False, fp16=False, model_init_kwargs={"dtype": "float32"})


# -- parent: lockstep, report ---------------------------------------------------------------

class Worker:
    """One framework's subprocess, driven line by line over its stdin/stdout."""

    def __init__(self, name: str, work: Path):
        self.name, self.log = name, work / f"{name}.stderr.log"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", name,
               "--workdir", str(work)]
        env = dict(os.environ, TOKENIZERS_PARALLELISM="false", TRANSFORMERS_VERBOSITY="error")
        with open(self.log, "w") as err:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=err, text=True, env=env)

    def expect(self, kind: str) -> dict:
        for line in self.proc.stdout:
            if line.startswith(MARK):
                got, _, payload = line[len(MARK):].partition(" ")
                if got == kind:
                    return json.loads(payload)
        self.proc.wait()
        sys.stderr.write(self.log.read_text()[-6000:])
        raise SystemExit(f"{self.name} worker exited ({self.proc.returncode}) before '{kind}'; "
                         f"log: {self.log}")

    def step(self) -> dict:
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        return self.expect("step")


def run_lockstep(spec: dict) -> dict[str, dict]:
    names = ("r1zero", "trl")
    workers = {n: Worker(n, Path(spec["work"])) for n in names}
    try:
        res = {n: {"ready": w.expect("ready"), "steps": []} for n, w in workers.items()}
        for k in range(spec["warmup"] + spec["steps"] + 1):
            for n in (names if k % 2 == 0 else names[::-1]):
                res[n]["steps"].append(workers[n].step())
        for n, w in workers.items():
            res[n].update(w.expect("result"))
            w.proc.wait(timeout=60)
    finally:
        for w in workers.values():
            if w.proc.poll() is None:
                w.proc.kill()
    return res


def report(args, spec: dict, res: dict[str, dict]) -> None:
    import torch

    keep = slice(spec["warmup"], spec["warmup"] + spec["steps"])
    steps = {n: r["steps"][keep] for n, r in res.items()}
    med = {n: statistics.median(s["wall"] for s in v) for n, v in steps.items()}
    cps = {n: PROMPTS * SAMPLES / v for n, v in med.items()}
    rss = {n: r["peak_rss_mb"] for n, r in res.items()}
    ours, theirs = res["r1zero"], res["trl"]
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load avg "
          f"{os.getloadavg()[0]:.2f}; torch {torch.__version__}, threads r1zero "
          f"{ours['threads']} / TRL {theirs['threads']}; TRL {theirs['ready']['trl']}")
    print(f"sizes: {args.model} model {_model_desc(spec['model'])}; {PROMPTS} prompts x {SAMPLES} "
          f"samples, {MAX_NEW} new tokens, temperature 1.0, beta 0.001, lr 1e-6, base_acc; "
          f"warm-up {spec['warmup']}, measured {spec['steps']} steps in lockstep; r1zero sampler "
          f"{ours['ready']['sampler']}, micro-batch {spec['micro_batch']}; TRL gradient "
          f"checkpointing {'on' if spec['trl_grad_ckpt'] else 'off'}")
    for n, v in steps.items():
        walls = " ".join(f"{s['wall']:.2f}" for s in v)
        print(f"{n:>6} step s: {walls} | mean response "
              f"{statistics.mean(s['resp_len'] for s in v):.1f} tokens | reward "
              f"{statistics.mean(s['reward'] for s in v):.3f}")
    ph = {k: statistics.median(s["phases"][k] for s in steps["r1zero"]) for k in
          steps["r1zero"][0]["phases"]}
    print("r1zero phases (median s): " + ", ".join(f"{k} {v:.3f}" for k, v in ph.items()))
    print(f"grpo step: r1zero {cps['r1zero']:.1f} completions/s vs TRL {cps['trl']:.1f} "
          f"completions/s = {cps['r1zero'] / cps['trl']:.2f}x ({PROMPTS}x{SAMPLES}, {MAX_NEW} new "
          f"tokens, cpu)")
    kids = ours["children"]
    print(f"peak RSS: r1zero {rss['r1zero']:.0f} MiB vs TRL {rss['trl']:.0f} MiB = "
          f"{rss['r1zero'] / rss['trl']:.2f}x (VmHWM of each trainer process; r1zero's scoring "
          f"pool: {kids['n']} more processes, {kids['pss_mb']:.0f} MiB PSS)")


def _model_desc(path: str) -> str:
    c = json.loads((Path(path) / "config.json").read_text())
    return (f"(qwen2, {c['num_hidden_layers']} layers, hidden {c['hidden_size']}, "
            f"vocab {c['vocab_size']})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=("random", "demo"), default="random")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--threads", type=int, default=1, help="torch threads of each side")
    ap.add_argument("--r1zero-micro-batch", type=int, default=16)
    ap.add_argument("--trl-no-grad-ckpt", action="store_true",
                    help="turn off TRL's default gradient checkpointing")
    ap.add_argument("--scoring-workers", type=int, default=1)
    ap.add_argument("--workdir", default=None, help="default: a fresh temporary directory")
    ap.add_argument("--worker", choices=("r1zero", "trl"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        spec = json.loads((Path(args.workdir) / "spec.json").read_text())
        _say("result", (worker_r1zero if args.worker == "r1zero" else worker_trl)(spec))
        return
    if args.warmup < 1 or args.steps < 1:
        raise SystemExit("need --warmup >= 1 and --steps >= 1")
    try:
        import trl  # noqa: F401
    except ImportError:
        raise SystemExit("TRL is not installed: pip install -e '.[bench]'") from None
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    if load + args.threads > cores + 0.5:
        print(f"note: load average {load:.1f} on {cores} cores: timings will be noisy"
              + (" and more than one torch thread may slow both sides many-fold"
                 if args.threads > 1 else ""))
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="grpo_vs_trl-"))
    try:
        spec = prepare(args, work)
        report(args, spec, run_lockstep(spec))
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
