"""SIGKILL of a 2-rank sharded run (driver, Ray and both ranks) in the middle of a step, then
``r1zero train --resume``: no prompt lost or repeated, metrics as an uninterrupted run's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from r1zero.trainer.metrics import read_metrics
from tests.trainer.conftest import kill_inside_step, recipe, write_recipe

pytest.importorskip("ray")
STEPS = 5
SECTIONS = dict(rewards={"text_length": {"weight": 1.0}},
                plugins={"modules": [str(Path(__file__).with_name("length_reward.py"))]},
                actor={"train_iters": STEPS, "lr": 1e-3}, checkpoint={"keep_last": 2})


def _train(cfg_path, *extra) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "r1zero.cli.main", "train", str(cfg_path),
                             *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                            text=True, start_new_session=True)   # its own group: Ray included


def _strip(rec: dict) -> dict:
    return {k: v for k, v in rec.items()
            if not k.startswith(("timing/", "throughput/")) and k != "data/ids"}


def test_sharded_two_rank_run_killed_mid_step_resumes_losing_nothing(tiny_setup, tmp_path):
    from r1zero.config.load import load_config
    from r1zero.trainer.grpo import GRPOTrainer

    ref = GRPOTrainer.from_config(load_config(None, base=recipe(tiny_setup, tmp_path / "ref",
                                                                **SECTIONS)))
    try:
        ref.run()                                   # one rank, uninterrupted
    finally:
        ref.close()
    reference = read_metrics(tmp_path / "ref" / "logs" / "metrics.jsonl")

    run = tmp_path / "killed"
    two = recipe(tiny_setup, run, **SECTIONS, ray={"enabled": True},
                 backend={"devices_per_node": 2, "num_threads": 1})
    cfg = write_recipe(tmp_path / "killed.yaml", two)
    proc = _train(cfg)
    metrics = run / "logs" / "metrics.jsonl"
    killed_at = kill_inside_step(proc, metrics)     # step 2 logged: kill inside step 3
    assert 2 <= killed_at < STEPS, (killed_at, proc.stdout.read())

    proc = _train(cfg, "--resume")
    out = proc.communicate(timeout=600)[0]
    assert proc.returncode == 0, out
    resumed = read_metrics(metrics)
    assert [r["step"] for r in resumed] == list(range(1, STEPS + 1))
    ids = [i for r in resumed for i in r["data/ids"]]
    assert ids == [i for r in reference for i in r["data/ids"]]     # nothing lost or repeated
    for got, want in zip(resumed, reference):
        assert _strip(got) == pytest.approx(_strip(want), rel=1e-4, abs=1e-4), got["step"]
