"""The seed's 671B recipe as shipped, on its tiny twin: the same file with the model swapped
for the tiny DeepSeek-V3 and the layout scaled to 2 CPU ranks, trains 2 steps through
``r1zero train`` (megatron engine, local Ray, gloo).

Every actor key of the seed acts as shipped: bf16 with ``initial_loss_scale`` 4096 (no effect),
``recompute: full``, the distributed optimizer, ``swap_optimizer``, ``use_dynamic_bsz`` with
``max_packing_token_size`` 4096, ``use_remove_padding``, ``moe_tp_extend_ep``, an uneven
``num_layer_list``, and ``rollout.offload_train_params`` / ``_grads``. What CPU ranks cannot
honour is replaced, each named here: the model (a tiny DeepSeek-V3), the data and template (the
demo's), the backend (cpu, 2 ranks: PP 2 with layers [1, 2] instead of TP 4 x PP 6 x EP 16), the
rollout engine (the built-in sampler instead of vLLM, so its tp/ep/vLLM keys are unset) and the
batch sizes; a length reward is added so a random model's advantages are not all zero.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

pytest.importorskip("megatron.core", reason="megatron-core not installed: pip install '.[megatron]'")
pytest.importorskip("ray")

from r1zero.trainer.metrics import read_metrics  # noqa: E402
from tests.megatron.test_megatron_train import ROOT, _cmd, _env, deepseek_setup  # noqa: E402,F401
from tests.trainer.conftest import recipe, tiny_setup, write_recipe  # noqa: E402,F401

SEED = ROOT / "examples" / "r1_zero_deepseek_671b.yaml"
VLLM_ONLY = ("max_num_seqs", "max_model_len", "max_num_batched_tokens", "gpu_memory_utilization")


def tiny_twin(setup: dict, run_dir: Path) -> dict:
    cfg = yaml.safe_load(SEED.read_text())
    demo = recipe(setup, run_dir)
    cfg["model"] = {"path": str(setup["model"]), "dtype": cfg["model"]["dtype"]}
    cfg["data"], cfg["template"] = demo["data"], demo["template"]
    cfg["rewards"]["text_length"] = {"weight": 1.0}
    cfg["plugins"] = {"modules": [str(ROOT / "tests" / "trainer" / "length_reward.py")]}
    cfg["backend"] = {"name": "cpu", "num_nodes": 1, "devices_per_node": 2, "num_threads": 1}
    r = cfg["rollout"]
    for key in VLLM_ONLY:
        del r[key]
    r.update(engine="sampler", tensor_parallel=1, expert_parallel=1, n_samples_per_prompt=2,
             max_prompt_length=128, max_response_length=8)
    cfg["actor"].update(global_batch_size=4, mini_batch_size=4, train_iters=2, lr=1e-3,
                        tensor_parallel=1, pipeline_parallel=2, expert_parallel=1,
                        num_layer_list=[1, 2])
    cfg["ray"] = {"enabled": True, "integrated_worker": True}
    cfg["checkpoint"], cfg["logging"] = demo["checkpoint"], demo["logging"]
    return cfg


def test_the_seed_recipe_trains_its_tiny_twin_on_two_cpu_ranks(deepseek_setup, tmp_path):
    shipped = yaml.safe_load(SEED.read_text())["actor"]
    assert shipped["use_remove_padding"] and shipped["swap_optimizer"]
    assert shipped["initial_loss_scale"] == 4096
    cfg = tiny_twin(deepseek_setup, tmp_path / "run")
    for key in ("use_remove_padding", "swap_optimizer", "initial_loss_scale", "recompute",
                "distributed_optimizer", "use_dynamic_bsz", "max_packing_token_size",
                "moe_tp_extend_ep"):
        assert cfg["actor"][key] == shipped[key], key
    path = write_recipe(tmp_path / "twin.yaml", cfg)
    done = subprocess.run(_cmd(path), cwd=ROOT, env=_env(), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    assert "initial_loss_scale 4096 has no effect with model.dtype bfloat16" in done.stderr
    rows = read_metrics(tmp_path / "run" / "logs" / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2]
    assert all(r["actor/grad_norm"] > 0 for r in rows)
