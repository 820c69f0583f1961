"""Per-step metrics: JSONL (the source of truth), TensorBoard, and PNG curves."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Mapping

log = logging.getLogger("r1zero.metrics")
# curve file name -> metric keys drawn in it (a key missing from the log is skipped)
CURVES = {
    "reward": ["reward/mean"],
    "format": ["reward/format"],
    "accuracy": ["reward/accuracy"],
    "response_length": ["response_length/mean", "response_length/max"],
    "kl": ["actor/kl"],
}


def tokens_per_s_per_device(prompt_len: float, response_len: float, n_prompts: int,
                            n_samples: int, world_size: int, step_s: float) -> float:
    """MindSpeed-RL's e2e_tps: (mean prompt + mean response) x gbs x n / world / step time."""
    return (prompt_len + response_len) * n_prompts * n_samples / max(1, world_size) / max(step_s, 1e-9)


class MetricsWriter:
    def __init__(self, log_dir: str | Path, tensorboard: bool = True, resume_step: int | None = None):
        self.dir = Path(log_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / "metrics.jsonl"
        if resume_step is not None:
            self._truncate_after(resume_step)
        elif self.path.exists():
            self.path.unlink()
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(self.dir / "tensorboard"))
            except ImportError:  # tensorboard is a base dependency; tolerate a minimal install
                self.tb = None

    def _truncate_after(self, step: int) -> None:
        """Drop records of steps after the checkpoint we resume from (a killed step's)."""
        if not self.path.exists():
            return
        records = read_metrics(self.path, repair=True)
        keep = [json.dumps(r) for r in records if r["step"] <= step]
        self.path.write_text("".join(line + "\n" for line in keep))

    def write(self, step: int, metrics: Mapping[str, Any]) -> None:
        record = {"step": step, **metrics}
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
        if self.tb is not None:
            for key, value in metrics.items():
                if isinstance(value, (int, float)):
                    self.tb.add_scalar(key, value, step)
            self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def read_metrics(path: str | Path, repair: bool = False) -> list[dict[str, Any]]:
    """The records of a metrics.jsonl. A cut-off last line (a run killed mid-write) is
    dropped with a warning; with ``repair`` it is also removed from the file. Any other
    unreadable line is a ``DatasetError`` naming the file and line."""
    from r1zero.host.errors import DatasetError

    text = Path(path).read_text(encoding="utf-8", errors="replace")
    lines = text.splitlines()
    records = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            if not isinstance(rec, dict) or not isinstance(rec.get("step"), int):
                raise ValueError("not a record with an integer 'step'")
        except ValueError as exc:
            if n < len(lines) or text.endswith("\n"):
                raise DatasetError(f"unreadable metrics record: {exc}", path=str(path), row=n) \
                    from None
            log.warning("%s: dropping the cut-off last line %d (a run killed mid-write)", path, n)
            if repair:
                Path(path).write_text("".join(ln + "\n" for ln in lines[:n - 1]), encoding="utf-8")
            break
        records.append(rec)
    return records


def plot_curves(metrics_path: str | Path, out_dir: str | Path, title: str = "") -> list[Path]:
    """One PNG per curve in ``CURVES`` (plus one per reward component) from metrics.jsonl."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(metrics_path)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    curves = dict(CURVES)
    for key in sorted({k for r in records for k in r}):
        if key.startswith("reward/") and key.count("/") == 2:
            curves.setdefault(key.replace("/", "_"), [key])
    written = []
    for name, keys in curves.items():
        keys = [k for k in keys if any(k in r for r in records)]
        if not keys:
            continue
        fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
        for key in keys:
            pts = [(r["step"], r[key]) for r in records if key in r]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=".", label=key)
        ax.set_xlabel("step")
        ax.set_title(f"{title} {name}".strip())
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8)
        fig.tight_layout()
        path = out_dir / f"{name}.png"
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    return written
