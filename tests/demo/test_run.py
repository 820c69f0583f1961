"""`r1zero demo` end to end with a base model pretrained for a few steps (the command path,
not the learning target: that is shown by running the demo itself)."""

import json
import os
import subprocess
import sys


def test_demo_command_runs_the_real_pipeline(tmp_path):
    env = dict(os.environ, R1ZERO_CACHE=str(tmp_path / "cache"))
    out = subprocess.run(
        [sys.executable, "-m", "r1zero.cli.main", "demo", "--out", str(tmp_path / "run"),
         "--pretrain-steps", "3", "actor.train_iters=2", "backend.num_threads=1",
         "scoring.workers=1", "logging.progress=false"],
        capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "[demo] format" in out.stdout and "accuracy" in out.stdout
    logs = tmp_path / "run" / "logs"
    records = [json.loads(line) for line in (logs / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2]
    assert {"reward/format", "reward/accuracy", "reward/base_acc/format"} <= set(records[-1])
    assert (logs / "plots" / "format.png").exists()
    manifest = json.loads((tmp_path / "run" / "data" / "preprocessed" / "manifest.json").read_text())
    assert manifest["template"] == "r1_demo" and manifest["handler"] == "deepscaler"
