"""Items 4 and 15 (config side): impossible or non-finite numbers, unreadable config files,
malformed overrides, a YAML alias bomb and a lone surrogate all end in ``r1zero: error:``
naming the file and key, at ``config show``, before any model is loaded."""

from __future__ import annotations

import time

import pytest

from r1zero.config.load import load_config
from r1zero.host.errors import ConfigError
from tests.security.conftest import assert_user_error, main_

BAD_NUMBERS = [
    ("actor.lr=.inf", "actor.lr", "finite"),
    ("actor.lr=1e38", "actor.lr", "<= 1"),
    ("actor.clip_grad=.nan", "actor.clip_grad", "finite"),
    ("algorithm.entropy_coeff=.nan", "algorithm.entropy_coeff", "finite"),
    ("rewards.base_acc.weight=1e309", "rewards.base_acc.weight", "finite"),
    ("actor.mini_batch_size=-2", "actor.mini_batch_size", "> 0"),
    ("rollout.top_p=-1", "rollout.top_p", "> 0"),
    ("actor.adam_beta1=2", "actor.adam_beta1", "< 1"),
    ("scoring.workers=0", "scoring.workers", "> 0"),
    ("rollout.temperature=.inf", "rollout.temperature", "finite"),
    ("rollout.min_p=2", "rollout.min_p", "<= 1"),
    ("rollout.top_k=-5", "rollout.top_k", ">= -1"),
    ("rollout.gpu_memory_utilization=1.5", "rollout.gpu_memory_utilization", "<= 1"),
    ("algorithm.dual_clip=0.5", "algorithm.dual_clip", "> 1"),
    ("actor.seed=-1", "actor.seed", ">= 0"),
]


@pytest.fixture
def cfg_file(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text("name: probe\nactor:\n  lr: 1.0e-6\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("override,key,why", BAD_NUMBERS)
def test_impossible_numbers_fail_at_config_show(cfg_file, capsys, override, key, why):
    assert_user_error(main_(capsys, "config", "show", str(cfg_file), override), key, why)


def test_non_finite_numbers_in_the_yaml_file_name_file_and_key(tmp_path, capsys):
    path = tmp_path / "r.yaml"
    path.write_text("actor:\n  lr: .inf\n", encoding="utf-8")
    assert_user_error(main_(capsys, "config", "show", str(path)), str(path), "actor.lr", "finite")


def test_numbers_set_from_python_are_checked_too():
    from r1zero.config.recipe import ActorConfig

    with pytest.raises(ValueError, match="finite"):
        ActorConfig(clip_grad=float("nan"))


def test_config_path_that_is_a_directory(tmp_path, capsys):
    assert_user_error(main_(capsys, "config", "show", str(tmp_path)), str(tmp_path), "directory")


def test_config_that_is_not_utf8(tmp_path, capsys):
    path = tmp_path / "r.yaml"
    path.write_bytes(b"name: caf\xe9\xff\n")
    assert_user_error(main_(capsys, "config", "show", str(path)), str(path), "not UTF-8")


def test_malformed_override(cfg_file, capsys):
    assert_user_error(main_(capsys, "config", "show", str(cfg_file), "actor.lr=[1,"),
                      "actor.lr", "not valid YAML")


def test_lone_surrogate_in_the_run_name_is_refused(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text('name: "run \\udc80"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="name: not valid Unicode text"):
        load_config(path)


def test_yaml_alias_bomb_is_bounded(tmp_path, capsys):
    """Nine levels of nine aliases under a key that takes any value (``model.arch``): ~4.9e8
    nodes once expanded; before the bound, ``config show`` ran for minutes."""
    lines = ["model:", "  arch:", '    a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i, name in enumerate("bcdefghi"):
        lines.append(f"    {name}: &{name} [" + ",".join([f"*{'abcdefghi'[i]}"] * 9) + "]")
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert path.stat().st_size < 1500
    t = time.perf_counter()
    assert_user_error(main_(capsys, "config", "show", str(path)), str(path), "alias bomb")
    assert time.perf_counter() - t < 5


def test_recursive_alias_is_refused(tmp_path):
    path = tmp_path / "loop.yaml"
    path.write_text("model:\n  arch: &x {self: *x}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="refers to itself"):
        load_config(path)


def test_ordinary_anchors_still_work(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text("actor: {lr: &lr 3.0e-6, min_lr: *lr}\n", encoding="utf-8")
    assert load_config(path).actor.min_lr == 3.0e-6


def test_overrides_after_resume_flag_are_read(cfg_file, capsys):
    proc = main_(capsys, "config", "show", str(cfg_file), "actor.lr=2e-6")
    assert "lr: 2.0e-06" in proc.stdout
    proc = main_(capsys, "train", str(cfg_file), "--resume", "actor.lr=.nan")
    assert_user_error(proc, "actor.lr", "finite")          # the override after --resume was read
    proc = main_(capsys, "train", str(cfg_file), "--resume", "--bogus")
    assert proc.returncode == 2 and "unrecognized arguments: --bogus" in proc.stderr


@pytest.mark.parametrize("override,key,names", [
    ("rollout.engine=no_such_engine", "rollout.engine", "auto, sampler, vllm"),
    ("model.dtype=int8", "model.dtype", "float32, bfloat16, float16"),
    ("actor.engine=zz", "actor.engine", "auto, torch, fsdp, megatron"),
    ("actor.recompute=zz", "actor.recompute", "none, full, selective"),
    ("actor.lr_scheduler=zz", "actor.lr_scheduler", "constant, cosine, linear"),
    ("algorithm.kl_penalty=zz", "algorithm.kl_penalty", "k3"),
    ("algorithm.loss_agg=zz", "algorithm.loss_agg", "token-mean"),
    ("logging.wandb.mode=zz", "logging.wandb.mode", "online, offline, disabled"),
])
def test_choice_keys_answer_in_a_sentence(cfg_file, capsys, override, key, names):
    """Issue 21 item 8: before, attrs' ``in_`` validator printed its argument tuple with the
    attribute's repr (``Attribute(name='engine', default='auto', validator=<in_ ...``)."""
    line = assert_user_error(main_(capsys, "config", "show", str(cfg_file), override), key,
                             "must be one of", names, "got '" + override.split("=")[1] + "'")
    assert "Attribute(" not in line and "validator" not in line
