"""``r1zero plugin new``: the new-user path of docs/plugins.md, for real. Generate packages,
pip-install them, run their generated tests, see them in ``r1zero plugins``, train with the
new reward by name. Packages are installed into a private folder (``pip install --target``) put
on the path, so nothing from a temp dir lingers in the environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from r1zero import manager
from r1zero.cli import main
from r1zero.config_load import load_config
from r1zero.manager import PluginHost
from r1zero.scaffold import Names, ScaffoldError, new_plugin, package_files
from r1zero.trainer.grpo import GRPOTrainer
from r1zero.trainer.metrics import read_metrics
from tests.plugins_experience.installing import install_to

KINDS = {"rewards": "my_reward", "templates": "my_template", "datasets": "my_dataset",
         "backends": "my_backend"}


def test_names_and_refusals(tmp_path):
    n = Names.of("rewards", "my_reward")
    assert (n.dist, n.module, n.cls) == ("r1zero-my-reward", "r1zero_my_reward", "MyRewardScorer")
    assert Names.of("datasets", "r1zero_gsm").dist == "r1zero-gsm"
    with pytest.raises(ScaffoldError, match="unknown plugin kind 'reward'; choose one of: templates"):
        Names.of("reward", "x")
    with pytest.raises(ScaffoldError, match="plugin name 'My-Reward' must be lower case"):
        Names.of("rewards", "My-Reward")
    new_plugin("rewards", "my_reward", tmp_path)
    with pytest.raises(ScaffoldError, match="r1zero-my-reward already exists and is not empty"):
        new_plugin("rewards", "my_reward", tmp_path)


def test_every_kind_is_valid_python():
    for kind, name in KINDS.items():
        for rel, text in package_files(kind, name).items():
            if rel.endswith(".py"):
                compile(text, rel, "exec")
            assert "__" + "NAME__" not in text and "__" + "CLASS__" not in text, rel


@pytest.fixture
def fresh_cli_host(monkeypatch):
    """The CLI builds its plugin host anew (it caches one per process)."""
    monkeypatch.setattr(manager, "_default", None)


def test_plugin_new_install_test_list_and_train(tmp_path, capsys, monkeypatch, write_recipe,
                                                fresh_cli_host):
    # 1. generate (the CLI, in-process) ------------------------------------------------
    for kind, name in KINDS.items():
        assert main(["plugin", "new", kind, name, "--dir", str(tmp_path / "src")]) == 0
    out = capsys.readouterr().out
    assert "wrote " in out and "pip install -e " in out and "r1zero-my-reward" in out
    pkgs = [tmp_path / "src" / Names.of(k, n).dist for k, n in KINDS.items()]

    # 2. pip install, 3. run the generated tests as the author would ------------------------
    site = install_to(pkgs, tmp_path / "site")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           *map(str, pkgs)], capture_output=True, text=True, env=env,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "16 passed" in proc.stdout, proc.stdout[-500:]

    # 4. r1zero plugins lists them -----------------------------------------------------------
    monkeypatch.syspath_prepend(str(site))
    assert main(["plugins", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    for kind, name in KINDS.items():
        row = rows[name]
        assert (row["source"], row["distribution"], row["version"], row["error"]) == (
            "installed", Names.of(kind, name).dist, "0.1.0", None)
    assert rows["my_reward"]["registered"] == {"rewards": ["my_reward"]}

    # 5. train with the new reward, named in the config ---------------------------------------
    path = write_recipe(template={"name": "r1_demo"},
                        rewards={"my_reward": {"weight": 1.0, "options": {"case_sensitive": False}}},
                        actor={"lr": 1.0e-3, "global_batch_size": 2, "micro_batch_size": 4,
                               "train_iters": 1})
    trainer = GRPOTrainer(load_config(path), host=PluginHost().load())
    try:
        trainer.run()
    finally:
        trainer.close()
    (rec,) = read_metrics(tmp_path / "logs" / "metrics.jsonl")
    for comp in ("reward", "tagged", "exact"):
        assert f"reward/my_reward/{comp}" in rec
        assert (tmp_path / "logs" / "plots" / f"reward_my_reward_{comp}.png").stat().st_size > 0
    assert rec["reward/my_reward/errors"] == 0
