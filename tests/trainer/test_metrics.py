"""Metrics sinks: the dashboard figure, wandb in offline mode, line progress off a terminal."""

from __future__ import annotations

import io
import json

import pytest

from r1zero.config.recipe import WandbConfig
from r1zero.trainer.metrics import DASHBOARD, MetricsWriter, _panel_keys, plot_curves
from r1zero.trainer.progress import LineProgress, progress


def _records(writer: MetricsWriter) -> None:
    writer.write(0, {"val/accuracy": 0.1, "val/pass@4": 0.3, "val/mean@4": 0.1})
    for step in (1, 2, 3):
        val = {"val/accuracy": 0.5, "val/pass@4": 0.7, "val/mean@4": 0.5} if step == 3 else {}
        writer.write(step, {"reward/mean": 0.1 * step, "reward/format": 0.2 * step,
                            "reward/accuracy": 0.1 * step, "response_length/mean": 10.0 + step,
                            "actor/kl": 0.01 * step, "data/ids": ["a", "b"], **val})


def test_dashboard_has_every_panel_and_sits_beside_the_curves(tmp_path):
    import matplotlib.image as mpimg

    writer = MetricsWriter(tmp_path, tensorboard=False)
    _records(writer)
    writer.close()
    written = plot_curves(writer.path, tmp_path / "plots", "t")
    names = {p.name for p in written}
    assert {"dashboard.png", "reward.png", "kl.png", "val_accuracy.png"} <= names
    assert mpimg.imread(tmp_path / "plots" / "dashboard.png").shape[1] > 1000   # 6 panels wide
    keys = {k for line in writer.path.read_text().splitlines() for k in json.loads(line)}
    assert list(DASHBOARD) == ["reward", "format", "accuracy", "response length", "KL", "validation",
                              "rollout mismatch"]
    assert _panel_keys(DASHBOARD["validation"], keys) == ["val/accuracy", "val/pass@4", "val/mean@4"]


def test_wandb_offline_run_gets_the_metrics(tmp_path):
    wandb = pytest.importorskip("wandb")
    writer = MetricsWriter(tmp_path, tensorboard=False,
                           wandb=WandbConfig(project="r1zero-test", name="t", mode="offline"))
    run = writer.wandb
    assert run is not None and run.offline
    _records(writer)
    summary = dict(run.summary)
    writer.close()
    assert summary["reward/mean"] == pytest.approx(0.3) and summary["val/accuracy"] == 0.5
    assert "data/ids" not in summary                         # only numbers go to wandb
    run_id = (tmp_path / "wandb_run_id").read_text().strip()
    assert list((tmp_path / "wandb").glob(f"offline-run-*-{run_id}/run-{run_id}.wandb"))
    assert wandb.run is None


def test_line_progress_prints_once_per_interval():
    out = io.StringIO()
    bar = LineProgress(total=7, desc="run", unit="step", every=3, stream=out)
    for step in range(1, 8):
        bar.set_postfix(reward=f"{step / 10:.1f}")
        bar.update(1)
    bar.close()
    lines = out.getvalue().splitlines()
    assert [line.split(" ", 2)[1] for line in lines] == ["3/7", "6/7", "7/7"]
    assert lines[0].startswith("run: 3/7 step (43%)") and lines[0].endswith("reward=0.3")
    assert "\r" not in out.getvalue()


def test_progress_is_lines_off_a_terminal_and_tqdm_on_one():
    assert isinstance(progress(5, tty=False), LineProgress)
    assert not isinstance(progress(5, tty=True), LineProgress)
