"""Issue 21 item 2 (config side): ``r1zero config import`` of a crafted MindSpeed-RL YAML.

Before: a key holding a newline wrote a ``plugins:`` section of its own into the recipe's
comment header (``r1zero plan`` of the recipe then imported the named module), ``"false"``
imported as ``trust_remote_code: true``, and odd value types ended in tracebacks.
"""

from __future__ import annotations

import pytest
import yaml

from tests.security.conftest import assert_user_error, main_

INJECTED = "lr\nplugins:\n  modules: [pwn_mod]\n#"


def write(path, tree) -> str:
    path.write_text(yaml.safe_dump(tree), encoding="utf-8")
    return str(path)


def test_a_key_with_a_newline_is_refused_by_name(tmp_path, capsys):
    src = write(tmp_path / "ms.yaml", {"actor_config": {INJECTED: 1.0, "lr": 1e-6}})
    out = tmp_path / "recipe.yaml"
    proc = main_(capsys, "config", "import", src, "--output", str(out))
    line = assert_user_error(proc, src, "control character", repr(f"actor_config.{INJECTED}"))
    assert "\n" not in line
    assert not out.exists()


@pytest.mark.parametrize("key", ["a\rb", "a\x1b[2Jb", "a\u2028b", "a\x85b", "a\u202eb"])
def test_other_unprintable_keys_are_refused(tmp_path, capsys, key):
    src = write(tmp_path / "ms.yaml", {"rl_config": {"nested": {key: 1}}})
    assert_user_error(main_(capsys, "config", "import", src), "control character")


def test_a_file_name_with_a_newline_stays_inside_the_comment(tmp_path, capsys):
    src = write(tmp_path / "a\nplugins:\n  modules: [pwn_mod]\n#.yaml",
                {"actor_config": {"lr": 1e-6}})
    out = tmp_path / "recipe.yaml"
    proc = main_(capsys, "config", "import", src, "--output", str(out))
    if proc.returncode == 0:
        tree = yaml.safe_load(out.read_text(encoding="utf-8"))
        assert "plugins" not in tree and tree["actor"]["lr"] == 1e-6
    else:                               # the run name itself may be refused: fine, by name
        assert_user_error(proc, "name")


ODD = [
    ("megatron_training", "train_iters", float("inf")),
    ("megatron_training", "train_iters", 1.5),
    ("megatron_training", "train_iters", True),
    ("rl_config", "verifier_function", 5),
    ("rl_config", "verifier_function", [{"a": 1}]),
    ("rl_config", "kl_penalty", [1]),
    ("rl_config", "actor_resource", {"num_npus": float("nan")}),
    ("actor_config", "num_layer_list", {"a": 1}),
    ("actor_config", "model", {"a": 1}),
    ("actor_config", "lr_warmup_fraction", float("inf")),
    ("generate_config", "trust_remote_code", "false"),
]


@pytest.mark.parametrize("section,key,value", ODD, ids=lambda v: repr(v)[:20])
def test_odd_value_types_are_reported_unmapped_not_a_traceback(tmp_path, capsys, section, key,
                                                              value):
    tree = {section: {key: value}, "megatron_training": {"train_iters": 10}} \
        if section != "megatron_training" else {section: {key: value}}
    tree.setdefault("defaults", 5)
    src = write(tmp_path / "ms.yaml", tree)
    out = tmp_path / "recipe.yaml"
    proc = main_(capsys, "config", "import", src, "--output", str(out))
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert f"r1zero: not mapped: {section}.{key}" in proc.stderr, proc.stderr
    recipe = yaml.safe_load(out.read_text(encoding="utf-8"))
    assert recipe.get("model", {}).get("trust_remote_code") is not True


def test_only_mapped_keys_reach_the_recipe(tmp_path, capsys):
    src = write(tmp_path / "ms.yaml", {"actor_config": {"lr": 2e-6, "plugins": ["x"]},
                                       "plugins": {"modules": ["pwn_mod"]}})
    out = tmp_path / "recipe.yaml"
    assert main_(capsys, "config", "import", src, "--output", str(out)).returncode == 0
    recipe = yaml.safe_load(out.read_text(encoding="utf-8"))
    assert "plugins" not in recipe and recipe["actor"]["lr"] == 2e-6
