"""Per-step metrics: JSONL (the source of truth), TensorBoard, optional Weights & Biases, and
PNG curves (one per metric, plus ``dashboard.png`` with every headline panel)."""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path
from typing import Any, Mapping

from r1zero.host.errors import ConfigError, DatasetError

log = logging.getLogger(__name__)
# curve file name -> metric keys drawn in it (a key missing from the log is skipped)
CURVES = {
    "reward": ["reward/mean"],
    "format": ["reward/format"],
    "accuracy": ["reward/accuracy"],
    "response_length": ["response_length/mean", "response_length/max"],
    "kl": ["actor/kl"],
}
# dashboard panel -> metric keys (a "prefix*" entry takes every key that starts with prefix)
DASHBOARD = {
    "reward": ["reward/mean"],
    "format": ["reward/format", "val/format_rate"],
    "accuracy": ["reward/accuracy"],
    "response length": ["response_length/mean"],
    "KL": ["actor/kl"],
    "validation": ["val/accuracy", "val/pass@*", "val/mean@*"],
    "rollout mismatch": ["rollout/logprob_diff_mean", "rollout/mismatch_kl"],
}


def tokens_per_s_per_device(prompt_len: float, response_len: float, n_prompts: int,
                            n_samples: int, world_size: int, step_s: float) -> float:
    """MindSpeed-RL's e2e_tps: (mean prompt + mean response) x gbs x n / world / step time."""
    return (prompt_len + response_len) * n_prompts * n_samples / max(1, world_size) / max(step_s, 1e-9)


class MetricsWriter:
    def __init__(self, log_dir: str | Path, tensorboard: bool = True, resume_step: int | None = None,
                 wandb: Any = None, run_config: Any = None):
        """``wandb``: a ``WandbConfig`` (project, name, mode) or None; ``run_config`` is logged
        as the run's config."""
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
        self.wandb = _wandb_run(wandb, run_config, self.dir, resume_step) if wandb else None

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
        if self.wandb is not None:
            self.wandb.log({k: v for k, v in metrics.items() if isinstance(v, (int, float))},
                           step=step, commit=True)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()
            self.wandb = None


def _wandb_run(wcfg: Any, run_config: Any, log_dir: Path, resume_step: int | None) -> Any:
    """A started wandb run, or a ConfigError when ``logging.wandb`` is set and wandb is not
    installed (a key that loads is a key that acts)."""
    try:
        import wandb
    except ImportError as exc:

        raise ConfigError(f"logging.wandb is set but wandb is not importable ({exc}); "
                          f"`pip install wandb` or remove logging.wandb", key="logging.wandb") from exc
    config = None
    if run_config is not None:
        import attrs

        config = attrs.asdict(run_config) if attrs.has(type(run_config)) else dict(run_config)
    wdir = Path(wcfg.dir) if wcfg.dir else log_dir
    wdir.mkdir(parents=True, exist_ok=True)
    name = wcfg.name or (getattr(run_config, "name", None) if run_config is not None else None)
    id_file = log_dir / "wandb_run_id"      # a resumed run continues the same wandb run
    if resume_step is not None and id_file.is_file():
        run_id = id_file.read_text().strip()
    else:
        run_id = uuid.uuid4().hex[:12]
        id_file.write_text(run_id)
    return wandb.init(project=wcfg.project, name=name, mode=wcfg.mode, dir=str(wdir),
                      config=config, id=run_id, resume="allow", reinit="finish_previous")


def read_metrics(path: str | Path, repair: bool = False) -> list[dict[str, Any]]:
    """The records of a metrics.jsonl. A cut-off last line (a run killed mid-write) is
    dropped with a warning; with ``repair`` it is also removed from the file. Any other
    unreadable line is a ``DatasetError`` naming the file and line."""
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
    every_key = sorted({k for r in records for k in r})
    for key in every_key:
        if key.startswith("reward/") and key.count("/") == 2:
            curves.setdefault(key.replace("/", "_"), [key])
    val = [k for k in every_key if k == "val/accuracy" or k.startswith(("val/pass@", "val/mean@"))]
    if val:
        curves["val_accuracy"] = val
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
    dash = plot_dashboard(records, out_dir / "dashboard.png", title)
    return written + ([dash] if dash else [])


def _panel_keys(spec: list[str], keys: set[str]) -> list[str]:
    out = []
    for k in spec:
        out += sorted(x for x in keys if x.startswith(k[:-1])) if k.endswith("*") else \
            ([k] if k in keys else [])
    return out


def plot_dashboard(records: list[dict[str, Any]], path: Path, title: str = "") -> Path | None:
    """One figure with a panel per ``DASHBOARD`` entry (an empty panel says "not logged")."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = {k for r in records for k in r}
    if not records:
        return None
    fig, axes = plt.subplots(2, 3, figsize=(13, 6.5), dpi=90)
    for ax, (panel, spec) in zip(axes.flat, DASHBOARD.items()):
        shown = _panel_keys(spec, keys)
        for key in shown:
            pts = [(r["step"], r[key]) for r in records if isinstance(r.get(key), (int, float))]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=".", label=key)
        ax.set_title(panel)
        ax.grid(alpha=0.3)
        if shown:
            ax.legend(loc="best", fontsize=7)
        else:
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes)
        ax.set_xlabel("step")
    fig.suptitle(title or "r1zero")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
