"""Does overlapping hurt learning? The demo's recipe in rollout.mode sync, one_step_off and async
(max_staleness 1, partial on), one after the other, from the demo's base model; one dashboard
PNG with the three runs' format, accuracy and held-out accuracy curves.

    python benchmarks/async_learning.py [--out runs/async_learning] [--model PATH] [key=value ...]

``--model``: a base model directory (default: the cached base model of ``r1zero demo``, built
on first use). The held-out problems, data and step budget are the demo's (``r1zero demo``).
Prints each run's last-step format and accuracy and its held-out greedy accuracy, and checks
the issue's bar: format >= 0.9 and accuracy >= 0.7 within the step budget.
"""

from __future__ import annotations

import argparse
from pathlib import Path

MODES = {"sync": [], "one_step_off": ["rollout.mode=one_step_off"],
         "async": ["rollout.mode=async", "rollout.max_staleness=1", "rollout.partial=true"]}
PANELS = [("reward/format", "format (train batch)"), ("reward/accuracy", "accuracy (train batch)"),
          ("val/accuracy", "held-out accuracy (greedy)")]


def run_mode(out: Path, model: Path, overrides: list[str]) -> list[dict]:
    from r1zero.demo.run import HELD_OUT, demo_config, write_problems
    from r1zero.trainer.grpo import GRPOTrainer
    from r1zero.trainer.metrics import read_metrics

    data = write_problems(out / "data" / "demo_problems.jsonl", 4096, seed=1)
    held_out = write_problems(out / "data" / "held_out.jsonl", HELD_OUT, seed=2, exclude=data)
    cfg = demo_config(out, model, data, ["logging.progress=false", *overrides], held_out)
    trainer = GRPOTrainer.from_config(cfg)
    try:
        trainer.run()
    finally:
        trainer.close()
    return read_metrics(trainer.writer.path)    # with step 0's held-out accuracy


def plot(histories: dict[str, list[dict]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(PANELS), figsize=(5 * len(PANELS), 3.6), dpi=100)
    for ax, (key, title) in zip(axes, PANELS):
        for mode, hist in histories.items():
            pts = [(r["step"], r[key]) for r in hist if key in r]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="." if key.startswith(
                "val/") else None, label=mode)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    fig.suptitle("r1zero demo: rollout.mode sync / one_step_off / async (staleness 1, partial)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="runs/async_learning")
    ap.add_argument("--model", default=None)
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("overrides", nargs="*", help="dotted overrides of the demo recipe")
    args = ap.parse_args()
    if args.model is None:
        from r1zero.demo.basemodel import build_base_model
        from r1zero.demo.run import cache_dir

        model = build_base_model(cache_dir(), seed=0, log=lambda *a: print("[pretrain]", *a))
    else:
        model = Path(args.model)
    out = Path(args.out)
    histories = {}
    for mode in args.modes.split(","):
        hist = run_mode(out / mode, model, MODES[mode] + args.overrides)
        histories[mode] = hist
        last = [r for r in hist if "reward/format" in r][-1]
        val = [r["val/accuracy"] for r in hist if "val/accuracy" in r]
        ok = last["reward/format"] >= 0.9 and last["reward/accuracy"] >= 0.7
        print(f"{mode:13s} step {last['step']}: format {last['reward/format']:.2f} accuracy "
              f"{last['reward/accuracy']:.2f} held-out {val[0]:.2f} -> {val[-1]:.2f} "
              f"({'meets' if ok else 'misses'} format >= 0.9, accuracy >= 0.7)", flush=True)
    print(f"dashboard: {plot(histories, out / 'dashboard.png')}")


if __name__ == "__main__":
    main()
