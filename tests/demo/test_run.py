"""`r1zero demo` end to end with a base model pretrained for a few steps (the command path,
not the learning target: that is shown by running the demo itself)."""

import json
import re
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
    held = [line for line in out.stdout.splitlines() if line.startswith("[demo] held-out accuracy")]
    assert len(held) == 1 and re.fullmatch(
        r"\[demo\] held-out accuracy \(greedy, \d+ problems\): base \d\.\d\d -> trained \d\.\d\d",
        held[0]), held
    assert "   base (" in out.stdout and "trained (" in out.stdout
    logs = tmp_path / "run" / "logs"
    records = [json.loads(line) for line in (logs / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [0, 1, 2]
    assert "val/accuracy" in records[0] and "val/pass@4" in records[-1]
    # the line counts the held-out prompts that fit rollout.max_prompt_length
    assert f"greedy, {records[0]['val/n_problems']} problems" in held[0]
    train = {json.loads(x)["problem"] for x in
             (tmp_path / "run" / "data" / "demo_problems.jsonl").read_text().splitlines()}
    held_out = [json.loads(x)["problem"] for x in
                (tmp_path / "run" / "data" / "held_out.jsonl").read_text().splitlines()]
    assert len(set(held_out)) == 64 and not train & set(held_out)
    assert {"reward/format", "reward/accuracy", "reward/base_acc/format"} <= set(records[-1])
    assert (logs / "plots" / "format.png").exists()
    manifest = json.loads((tmp_path / "run" / "data" / "preprocessed" / "manifest.json").read_text())
    assert manifest["template"] == "r1_demo" and manifest["handler"] == "deepscaler"
