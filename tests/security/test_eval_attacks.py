"""Issue 21 items 2 and 6 (eval side): ``r1zero eval CHECKPOINT`` of a crafted checkpoint,
and unbounded ``--n`` / ``--k`` / ``--max-new-tokens``.

Before: eval applied the checkpoint's own ``recipe.yaml`` -- its ``plugins.modules`` were
imported, its ``model.trust_remote_code`` and ``backend.env`` applied; ``--k 0`` meant k = n;
``--n 1000000000`` and ``--max-new-tokens 1000000000`` went on to load the model and generate.
The checkpoint here is a step directory with ``meta.json``, ``model/config.json`` and the
run's ``recipe.yaml`` beside it -- what ``resolve_model`` reads; every refusal comes before a
model is loaded, so no weights are needed.
"""

from __future__ import annotations

import json

import pytest
import yaml

from tests.security.conftest import assert_user_error, main_

ARCH = {"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "hidden_size": 64,
        "num_attention_heads": 4, "num_key_value_heads": 2, "num_hidden_layers": 2,
        "intermediate_size": 128, "vocab_size": 200, "max_position_embeddings": 1024}


@pytest.fixture
def ckpt(tmp_path):
    """(model dir inside a step checkpoint, recipe path, marker path, problems file)."""
    root = tmp_path / "run" / "checkpoints"
    model = root / "step_000002" / "model"
    model.mkdir(parents=True)
    (model / "config.json").write_text(json.dumps(ARCH), encoding="utf-8")
    (model.parent / "meta.json").write_text('{"step": 2}', encoding="utf-8")
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil_plugin.py"
    evil.write_text(f"open({str(marker)!r}, 'w').write('ran')\n", encoding="utf-8")
    data = tmp_path / "problems.jsonl"
    data.write_text(json.dumps({"problem": "1+1?", "answer": "2"}) + "\n", encoding="utf-8")
    return model, root / "recipe.yaml", marker, evil, data


def eval_(capsys, model, data, tmp_path, *extra):
    return main_(capsys, "eval", str(model), "--data", str(data), "--output",
                 str(tmp_path / "out"), *extra)


@pytest.mark.parametrize("key,value", [
    ("plugins.modules", "EVIL"),
    ("model.trust_remote_code", True),
    ("backend.env", {"PYTHONPATH": "/tmp/evil", "LD_PRELOAD": "/tmp/evil.so"}),
])
def test_code_loading_keys_of_a_checkpoint_recipe_are_refused(ckpt, tmp_path, capsys, key,
                                                              value):
    model, recipe, marker, evil, data = ckpt
    section, name = key.split(".")
    recipe.write_text(yaml.safe_dump({section: {name: [str(evil)] if value == "EVIL" else value},
                                      "rollout": {"max_response_length": 64}}),
                      encoding="utf-8")
    proc = eval_(capsys, model, data, tmp_path)
    line = assert_user_error(proc, str(recipe), key, "loads code", "pass it yourself", f"{key}=")
    assert not marker.exists(), "the checkpoint's plugin module was imported"
    assert "Traceback" not in proc.stderr
    assert line


def test_the_user_may_pass_a_code_key_on_the_command_line(ckpt, tmp_path, capsys):
    model, recipe, marker, evil, data = ckpt
    recipe.write_text(yaml.safe_dump({"plugins": {"modules": [str(evil)]}}), encoding="utf-8")
    proc = eval_(capsys, model, data, tmp_path, f"plugins.modules=[{evil}]",
                 "--max-new-tokens", "8")
    assert "loads code" not in proc.stderr
    assert marker.exists()          # the user's own choice, on the user's command line


def test_an_explicit_config_is_the_users_own(ckpt, tmp_path, capsys):
    model, recipe, marker, evil, data = ckpt
    mine = tmp_path / "mine.yaml"
    mine.write_text(yaml.safe_dump({"plugins": {"modules": [str(evil)]}}), encoding="utf-8")
    proc = eval_(capsys, model, data, tmp_path, "--config", str(mine), "--max-new-tokens", "8")
    assert "loads code" not in proc.stderr and marker.exists()


@pytest.mark.parametrize("flags,fragments", [
    (["--k", "0"], ["--k 0", "between 1"]),
    (["--n", "4", "--k", "5"], ["--k 5"]),
    (["--max-new-tokens", "1000000000"], ["--max-new-tokens", "max_position_embeddings 1024"]),
    (["--n", "1000000000", "--max-new-tokens", "16"], ["--n", "GiB", "memory budget"]),
])
def test_eval_bounds_before_any_work(ckpt, tmp_path, capsys, flags, fragments):
    model, recipe, marker, evil, data = ckpt
    recipe.write_text(yaml.safe_dump({"rollout": {"max_prompt_length": 64}}), encoding="utf-8")
    assert_user_error(eval_(capsys, model, data, tmp_path, *flags), *fragments)
    assert not (tmp_path / "out").exists()


def test_plan_refuses_impossible_architecture_numbers(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: p\n", encoding="utf-8")
    for override, shown in (("model.arch.hidden_size=-1", "-1"), ("model.arch.vocab_size=.inf",
                                                                  "inf"),
                            ("model.arch.num_attention_heads=0", "0"),
                            ("model.arch.intermediate_size=2.5", "2.5")):
        key = override.split("=")[0]
        assert_user_error(main_(capsys, "plan", str(recipe), override), key, shown)
