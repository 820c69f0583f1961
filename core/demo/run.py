"""``r1zero demo``: build the tiny base model (cached), then run R1-Zero GRPO on it.

    r1zero demo [--out runs/demo] [--seed 0] [key=value ...]

The run goes through the real pipeline: the deepscaler handler, a template plugin, the
tokenizer, preprocessing, the cpu backend, the lean sampler, the base_acc scorer in the
scoring pool, GRPO updates, metrics, PNG curves and a checkpoint.

What RL did is measured on held-out problems the run never trains on (``data.val_input``):
validation at step 0 is the base model, at the last step the trained one; the demo prints
their greedy accuracies on one line and one problem's two responses side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import yaml

from r1zero.demo.arith import demo_records

RECIPE = Path(__file__).with_name("recipe.yaml")


def cache_dir() -> Path:
    root = os.environ.get("R1ZERO_CACHE") or Path.home() / ".cache" / "r1zero"
    return Path(root).expanduser() / "demo"


HELD_OUT = 64           # held-out problems (none of them is a training problem)
HELD_OUT_DRAWS = 60000  # candidates drawn to find them (0.4 s)


def demo_config(out: Path, model_dir: Path, data_file: Path, overrides=(),
                held_out: Path | None = None):
    from r1zero.config.load import load_config

    base = yaml.safe_load(RECIPE.read_text())
    base["model"]["path"] = str(model_dir)
    base["data"].update(input=str(data_file), output=str(out / "data" / "preprocessed"))
    if held_out is not None:
        base["data"]["val_input"] = str(held_out)
    base["checkpoint"]["dir"] = str(out / "checkpoints")
    base["logging"]["dir"] = str(out / "logs")
    return load_config(None, list(overrides), base=base)


def write_problems(path: Path, n: int, seed: int, exclude: Path | None = None) -> Path:
    """n demo problems; with ``exclude``, n distinct ones none of which is a problem of that
    file (the demo's problem space is small: ~1 draw in 400 is new after 4096 training draws,
    so up to ``HELD_OUT_DRAWS`` candidates are drawn)."""
    if exclude is None:
        records = demo_records(n, seed=seed)
    else:
        seen = {json.loads(line)["problem"] for line in exclude.read_text().splitlines() if line}
        records = []
        for rec in demo_records(HELD_OUT_DRAWS, seed=seed):
            if rec["problem"] not in seen and len(records) < n:
                seen.add(rec["problem"])
                records.append(rec)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec) + "\n")
    os.replace(tmp, path)
    return path


def curve_table(history: list[dict], every: int = 5) -> str:
    cols = [("step", None), ("reward", "reward/mean"), ("format", "reward/format"),
            ("accuracy", "reward/accuracy"), ("resp_len", "response_length/mean"),
            ("kl", "actor/kl"), ("s/step", "timing/all")]
    lines = ["  ".join(f"{c:>8}" for c, _ in cols)]
    for i, m in enumerate(history, 1):
        if i % every and i != 1 and i != len(history):
            continue
        cells = [f"{i:>8d}"] + [f"{m.get(k, float('nan')):>8.3f}" for _, k in cols[1:]]
        lines.append("  ".join(cells))
    return "\n".join(lines)


def run_demo(args: argparse.Namespace) -> int:
    from r1zero.demo.basemodel import build_base_model
    from r1zero.trainer.grpo import GRPOTrainer

    t0 = time.perf_counter()
    out = Path(args.out)
    print(f"[demo] base model: building or reusing under {cache_dir()}", flush=True)
    model_dir = build_base_model(cache_dir(), seed=args.seed, steps=args.pretrain_steps,
                                 log=lambda *a: print("[pretrain]", *a, flush=True))
    t_model = time.perf_counter() - t0
    print(f"[demo] base model ready in {t_model:.1f}s: {model_dir}", flush=True)
    data = write_problems(out / "data" / "demo_problems.jsonl", 4096, seed=args.seed + 1)
    held_out = write_problems(out / "data" / "held_out.jsonl", HELD_OUT, seed=args.seed + 2,
                              exclude=data)
    cfg = demo_config(out, model_dir, data, args.overrides, held_out)
    trainer = GRPOTrainer.from_config(cfg)
    try:
        history = trainer.run()
    finally:
        trainer.close()
    total = time.perf_counter() - t0
    print(curve_table(history))
    first, last = history[0], history[-1]
    print(f"[demo] format {first['reward/format']:.2f} -> {last['reward/format']:.2f}, "
          f"accuracy {first['reward/accuracy']:.2f} -> {last['reward/accuracy']:.2f} "
          f"in {len(history)} steps; wall {total:.0f}s (base model {t_model:.0f}s)")
    print(held_out_report(trainer.validation, held_out))
    print(f"[demo] metrics: {trainer.writer.path}; curves: {Path(cfg.logging.dir) / 'plots'}")
    print(f"[demo] evaluate the trained model: r1zero eval {cfg.checkpoint.dir} --data {held_out}")
    return 0


def held_out_report(validation, held_out: Path) -> str:
    """The held-out line (greedy accuracy, base -> trained) and one problem's two responses:
    the first the base model got wrong and the trained one right, else the first."""
    base, trained = validation.first.greedy, validation.last.greedy
    n = len(base)
    acc_base = sum(a["correct"] for a in base) / n
    acc_trained = sum(a["correct"] for a in trained) / n
    lines = [f"[demo] held-out accuracy (greedy, {n} problems): base {acc_base:.2f} -> "
             f"trained {acc_trained:.2f}"]
    pick = next((i for i in range(n) if trained[i]["correct"] and not base[i]["correct"]), 0)
    records = [json.loads(line) for line in held_out.read_text().splitlines() if line]
    row = validation.problems.rows[pick]
    problem = records[int(row.extra["row"]) - 1]["problem"]
    lines.append(f"[demo] held-out problem: {problem}  (answer {row.ground_truth})")
    for who, a in (("base", base[pick]), ("trained", trained[pick])):
        verdict = "right" if a["correct"] else "wrong"
        lines.append(f"  {who:>7} ({verdict}): {a['response']!r}")
    return "\n".join(lines)
