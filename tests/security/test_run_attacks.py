"""Items 4 (non-finite weights), 5 (run lock), 7 (torn metrics line), 9 (unwritable outputs)
and 15 (model paths, resume with another dataset, lone surrogates in rows): each stops with
``r1zero: error:`` before step 1, or is repaired, and nothing of the run is lost."""

from __future__ import annotations

import json
import logging
import shutil
import signal
import subprocess
import sys
import textwrap

import pytest

from r1zero.config.load import load_config
from r1zero.host.errors import TrainingError
from r1zero.trainer import guards
from r1zero.trainer.grpo import GRPOTrainer
from r1zero.trainer.metrics import MetricsWriter, read_metrics
from r1zero.trainer.preflight import LOCK_FILE, RunLock
from tests.security.conftest import assert_user_error, main_, recipe, write_recipe


def _cfg_file(tiny_setup, tmp_path, **sections):
    return write_recipe(tmp_path / "r.yaml", recipe(tiny_setup, tmp_path / "run", **sections))


# -- 15: model paths -------------------------------------------------------------------------
@pytest.mark.parametrize("model,why", [("/nonexistent/model", "no such directory"),
                                       ("Qwen/Qwen2.5-Math-7B", "looks like a hub id"),
                                       ("EMPTY", "empty directory")])
def test_missing_empty_or_hub_model_paths(tiny_setup, tmp_path, capsys, model, why):
    if model == "EMPTY":
        model = str(tmp_path / "empty")
        (tmp_path / "empty").mkdir()
    path = _cfg_file(tiny_setup, tmp_path, model={"path": model})
    proc = main_(capsys, "train", str(path))
    assert_user_error(proc, "model.path", why)
    if "hub" in why:
        assert "never downloads" in proc.stderr


# -- 9: unwritable outputs ---------------------------------------------------------------------
@pytest.mark.parametrize("key", ["checkpoint", "logging"])
def test_unwritable_output_directory_fails_before_step_1(tiny_setup, tmp_path, capsys, key):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    path = _cfg_file(tiny_setup, tmp_path, **{key: {"dir": str(blocker / "sub")},
                                              "actor": {"train_iters": 1}})
    assert_user_error(main_(capsys, "train", str(path)), f"{key}.dir", "not a writable directory")
    assert not (tmp_path / "run").exists() or not list((tmp_path / "run").rglob("metrics.jsonl"))


# -- 5: one run per directory ------------------------------------------------------------------
_HOLDER = textwrap.dedent("""
    import sys, time
    from r1zero.trainer.preflight import RunLock
    RunLock(sys.argv[1:]).acquire()
    print("locked", flush=True)
    time.sleep(120)
""")


def _hold(*dirs):
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, *map(str, dirs)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_second_run_on_a_directory_names_the_holder(tiny_setup, tmp_path, capsys):
    path = _cfg_file(tiny_setup, tmp_path)
    cfg = load_config(path)
    holder = _hold(cfg.checkpoint.dir, cfg.logging.dir)
    try:
        proc = main_(capsys, "train", str(path))
        assert_user_error(proc, "in use by another r1zero run", f"pid {holder.pid}")
    finally:
        holder.kill()
        holder.wait()


def test_stale_lock_of_a_killed_run_is_detected_and_taken_over(tmp_path, caplog):
    holder = _hold(tmp_path)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert str(holder.pid) in (tmp_path / LOCK_FILE).read_text()
    with caplog.at_level(logging.WARNING, logger="r1zero.trainer"):
        lock = RunLock([tmp_path]).acquire()
    try:
        assert "stale lock" in caplog.text and f"pid {holder.pid}" in caplog.text
        assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] != holder.pid
    finally:
        lock.release()
    assert (tmp_path / LOCK_FILE).read_text() == ""        # a clean release leaves no holder


# -- 7: torn metrics line ----------------------------------------------------------------------
def test_torn_last_metrics_line_is_repaired_on_resume(tmp_path, caplog):
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    good = [json.dumps({"step": s, "reward/mean": 0.5}) for s in (1, 2)]
    (log_dir / "metrics.jsonl").write_text("\n".join(good) + '\n{"step": 3, "reward/me')
    with caplog.at_level(logging.WARNING, logger="r1zero.trainer"):
        writer = MetricsWriter(log_dir, tensorboard=False, resume_step=2)
    writer.write(3, {"reward/mean": 0.75})
    writer.close()
    assert "cut-off last line 3" in caplog.text
    assert [r["step"] for r in read_metrics(log_dir / "metrics.jsonl")] == [1, 2, 3]


def test_a_bad_line_in_the_middle_is_an_error_not_silence(tmp_path):
    from r1zero.host.errors import DatasetError

    f = tmp_path / "metrics.jsonl"
    f.write_text('{"step": 1}\n{"step": 2, "bro\n{"step": 3}\n')
    with pytest.raises(DatasetError, match="metrics.jsonl row 2: unreadable metrics record"):
        read_metrics(f)


# -- 4: non-finite weights or loss stop the run ------------------------------------------------
def test_model_with_non_finite_weights_stops_before_step_1(tiny_setup, tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    bad = tmp_path / "nan_model"
    shutil.copytree(tiny_setup["model"], bad)
    weights = load_file(bad / "model.safetensors")
    name = sorted(weights)[3]
    weights[name][0] = float("nan")
    save_file(weights, bad / "model.safetensors", metadata={"format": "pt"})
    path = _cfg_file(tiny_setup, tmp_path, model={"path": str(bad)})
    assert_user_error(main_(capsys, "train", str(path)), "non-finite", name)


def test_non_finite_loss_stops_before_the_optimizer_step():
    guards.check_step(3, {"loss": 0.5, "grad_norm": 1.0})
    with pytest.raises(TrainingError, match=r"step 3: non-finite grad_norm=nan"):
        guards.check_step(3, {"loss": 0.5, "grad_norm": float("nan")})


def test_n_samples_per_prompt_of_one_warns(tiny_setup, tmp_path, caplog):
    cfg = load_config(None, base=recipe(tiny_setup, tmp_path, rollout={"n_samples_per_prompt": 1}))
    with caplog.at_level(logging.WARNING, logger="r1zero.trainer"):
        GRPOTrainer.from_config(cfg).close()
    assert "n_samples_per_prompt is 1" in caplog.text and "advantage 0" in caplog.text


# -- 15: resume with another dataset; lone surrogates in rows ----------------------------------
def test_resume_with_a_different_dataset_is_a_user_error(trained, tmp_path, capsys):
    cfg, src = trained
    shutil.copytree(src / "ckpt", tmp_path / "ckpt")
    other = tmp_path / "other.jsonl"
    rows = [json.loads(x) for x in open(cfg["data"]["input"], encoding="utf-8")][:10]
    other.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    cfg = {**cfg, "data": {**cfg["data"], "input": str(other), "output": str(tmp_path / "prep")},
           "checkpoint": {**cfg["checkpoint"], "dir": str(tmp_path / "ckpt")},
           "logging": {**cfg["logging"], "dir": str(tmp_path / "logs")}}
    proc = main_(capsys, "train", str(write_recipe(tmp_path / "r.yaml", cfg)), "--resume")
    assert_user_error(proc, "cannot resume this run", "rows")


def test_lone_surrogate_in_a_dataset_row_is_a_row_error_and_skippable(tiny_setup, tmp_path, capsys):
    data = tmp_path / "rows.jsonl"
    data.write_text('{"problem": "1+1?", "answer": "2"}\n{"problem": "bad \\ud800", "answer": "1"}\n'
                    '{"problem": "2+2?", "answer": "4"}\n', encoding="utf-8")
    cfg = recipe(tiny_setup, tmp_path, data={"input": str(data), "output": str(tmp_path / "p")})
    path = write_recipe(tmp_path / "r.yaml", cfg)
    assert_user_error(main_(capsys, "preprocess", str(path)), "rows.jsonl row 2", "lone surrogate")
    proc = main_(capsys, "preprocess", str(path), "--skip-bad-rows")
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads(proc.stdout)
    assert (manifest["n_kept"], manifest["n_skipped_bad"]) == (2, 1)
