"""``r1zero train`` with ``actor.engine: megatron`` on CPU ranks, on the tiny DeepSeek-V3 (MLA,
a dense first layer, then MoE layers of 4 routed experts top-2 and a shared expert): a 1-rank
run, and the same recipe at EP 2 (dp 2, selective recompute) and at PP 2 (stages of 1 and 2
layers, full recompute) on a local Ray (2 ranks, gloo), per-step metrics equal within 1e-4.
The PP 2 run is killed with SIGKILL in the middle of a step and resumed with ``--resume`` on
one rank; all its steps equal the uninterrupted run's.

Each run is a subprocess of ``tests.megatron.train_main`` (the CPU redirections, then the CLI).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("megatron.core", reason="megatron-core not installed: pip install '.[megatron]'")
pytest.importorskip("ray")

from r1zero.trainer.metrics import read_metrics  # noqa: E402
from tests.trainer.conftest import (kill_inside_step, recipe, tiny_setup,  # noqa: E402,F401
                                    write_recipe)

ROOT = Path(__file__).resolve().parents[2]
STEPS = 4
SECTIONS = dict(
    rewards={"text_length": {"weight": 1.0}},
    plugins={"modules": [str(ROOT / "tests" / "trainer" / "length_reward.py")]},
    rollout={"n_samples_per_prompt": 2, "max_response_length": 8},
    actor={"engine": "megatron", "train_iters": STEPS, "lr": 1e-3, "global_batch_size": 4,
           "mini_batch_size": 2, "micro_batch_size": 2, "clip_grad": 1.0},
    algorithm={"kl_coef": 0.01}, checkpoint={"keep_last": 3, "save_interval": 2})


def _cmd(cfg_path: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "tests.megatron.train_main", "train", str(cfg_path), *extra]


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")


def write(setup, run_dir: Path, ranks: int = 1, **layout) -> Path:
    sections = {**SECTIONS, "actor": {**SECTIONS["actor"], **layout}}
    if ranks > 1:
        sections.update(ray={"enabled": True}, backend={"devices_per_node": ranks, "num_threads": 1})
    return write_recipe(run_dir.with_suffix(".yaml"), recipe(setup, run_dir, **sections))


def train(setup, run_dir: Path, ranks: int = 1, **layout) -> list[dict]:
    done = subprocess.run(_cmd(write(setup, run_dir, ranks, **layout)), cwd=ROOT, env=_env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    return read_metrics(run_dir / "logs" / "metrics.jsonl")


def comparable(rec: dict) -> dict:
    return {k: v for k, v in rec.items() if not k.startswith(("timing/", "throughput/"))}


def assert_same_metrics(got: list[dict], want: list[dict], tol: float = 1e-4) -> None:
    assert [r["step"] for r in got] == [r["step"] for r in want] == list(range(1, STEPS + 1))
    worst = (0.0, "")
    for g, w in zip(got, want):
        g, w = comparable(g), comparable(w)
        assert g.keys() == w.keys()
        for key in w:
            if isinstance(w[key], float):
                diff = abs(g[key] - w[key]) / max(1.0, abs(w[key]))
                worst = max(worst, (diff, f"step {g['step']} {key}"))
                assert diff <= tol, (g["step"], key, g[key], w[key])
            else:
                assert g[key] == w[key], (g["step"], key)
    print(f"megatron train: {len(want)} steps x {len(want[0])} metrics, largest difference "
          f"{worst[0]:.1e} ({worst[1]})")


@pytest.fixture(scope="module")
def deepseek_setup(tiny_setup, tmp_path_factory):
    """``tiny_setup`` (tokenizer, demo problems) with the tiny DeepSeek-V3 as the model."""
    from transformers import AutoTokenizer

    from tests.megatron.conftest import save_tiny_deepseek

    tok = AutoTokenizer.from_pretrained(tiny_setup["model"])
    model = save_tiny_deepseek(tmp_path_factory.mktemp("tiny_deepseek_train"), tokenizer=tok)
    tok.save_pretrained(model)
    return {**tiny_setup, "model": model}


@pytest.fixture(scope="module")
def one_rank(deepseek_setup, tmp_path_factory):
    return train(deepseek_setup, tmp_path_factory.mktemp("megatron_1rank") / "run")


def test_megatron_train_deepseek_ep2_equals_one_rank(deepseek_setup, tmp_path, one_rank):
    """2 data-parallel ranks, the 4 routed experts split 2 + 2 (EP 2), selective recompute."""
    assert one_rank[-1]["actor/grad_norm"] > 0 and one_rank[-1]["actor/kl"] > 0
    assert_same_metrics(train(deepseek_setup, tmp_path / "run", ranks=2, expert_parallel=2,
                              recompute="selective"), one_rank)


def test_megatron_train_deepseek_pp2_killed_mid_step_resumes_equal_to_one_rank(
        deepseek_setup, tmp_path, one_rank):
    """SIGKILL of the driver, Ray and both pipeline stages (1 dense layer | 2 MoE layers, full
    recompute, micro-batches of at most 160 padded tokens, each of its own shape) inside
    step 3, then ``--resume`` on one rank (the checkpoint of 2 stages loads resharded): the steps before and after equal the uninterrupted 1-rank run's."""
    cfg = write(deepseek_setup, tmp_path / "run", ranks=2, pipeline_parallel=2,
                num_layer_list=[1, 2], recompute="full", use_dynamic_bsz=True,
                max_packing_token_size=160)
    metrics = tmp_path / "run" / "logs" / "metrics.jsonl"
    proc = subprocess.Popen(_cmd(cfg), cwd=ROOT, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    killed_at = kill_inside_step(proc, metrics, saved=tmp_path / "run" / "ckpt" / "step_000002"
                                 / "meta.json")
    assert 2 <= killed_at < STEPS, (killed_at, proc.stdout.read()[-3000:])
    one = write(deepseek_setup, tmp_path / "run")       # the same run directories, 1 rank
    done = subprocess.run(_cmd(one, "--resume"), cwd=ROOT, env=_env(), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    assert_same_metrics(read_metrics(metrics), one_rank)


def test_megatron_train_deepseek_routing_replay_with_a_bf16_rollout(deepseek_setup, tmp_path):
    """``r1zero train`` (1 rank, 2 steps) with ``algorithm.routing_replay``: the sampler (a bf16
    copy) records the routes, they travel with the samples to megatron's routers for the
    reference, old and new log-probs; it trains and logs the mismatch metrics."""
    sections = {**SECTIONS, "actor": {**SECTIONS["actor"], "train_iters": 2},
                "rollout": {**SECTIONS["rollout"], "dtype": "bfloat16"},
                "algorithm": {**SECTIONS["algorithm"], "routing_replay": True}}
    run = tmp_path / "run"
    cfg = write_recipe(run.with_suffix(".yaml"), recipe(deepseek_setup, run, **sections))
    done = subprocess.run(_cmd(cfg), cwd=ROOT, env=_env(), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    got = read_metrics(run / "logs" / "metrics.jsonl")
    print("megatron train with routing replay:",
          [{k: r[k] for k in ("rollout/logprob_diff_mean", "rollout/mismatch_kl",
                              "actor/grad_norm")} for r in got])
    assert [r["step"] for r in got] == [1, 2]
    assert all(r["actor/grad_norm"] > 0 for r in got)
    assert all(0 < r["rollout/logprob_diff_mean"] < 0.05 for r in got)
