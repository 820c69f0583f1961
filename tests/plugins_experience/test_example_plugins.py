"""The four example packages under examples/plugins/, pip-installed into this environment:
``r1zero plugins`` lists them, their own tests pass, and a real GRPO run uses all four by name
from the config (reward composed with base_acc; every component logged and plotted)."""

from __future__ import annotations

import json

import pytest

from r1zero.host import manager
from r1zero.cli.main import main
from r1zero.config.load import load_config
from r1zero.host.manager import PluginHost
from r1zero.trainer.grpo import GRPOTrainer
from r1zero.data.pipeline import resolve
from r1zero.trainer.metrics import read_metrics
from tests.plugins_experience.conftest import EXAMPLE_DIRS

EXPECTED = {   # entry-point name -> (distribution, what it registers)
    "length_reward": ("r1zero-length-reward", {"rewards": ["length_penalty"]}),
    "chat_template": ("r1zero-template-example", {"templates": ["chat_r1"]}),
    "cpu_alias": ("r1zero-cpu-alias", {"backends": ["cpu_alias"]}),
    "cispo": ("r1zero-cispo", {"policy_losses": ["cispo"], "algorithms": ["cispo"]}),
}
COMPONENTS = ["base_acc/reward", "base_acc/format", "base_acc/accuracy",
              "length_penalty/reward", "length_penalty/length", "length_penalty/overlong"]


def test_cli_lists_the_installed_examples(examples_installed, capsys, monkeypatch):
    monkeypatch.setattr(manager, "_default", None)      # the CLI builds its host anew
    assert main(["plugins", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    for name, (dist, registered) in EXPECTED.items():
        row = rows[name]
        assert (row["source"], row["distribution"], row["version"]) == ("installed", dist, "0.1.0")
        assert row["registered"] == registered and row["error"] is None
    assert rows["base_acc"]["source"] == "built-in"      # the built-ins are still there
    assert rows["algorithms"]["registered"]["algorithms"] == ["grpo", "dr_grpo", "dapo", "gspo"]


def test_hook_register_rewards(examples_installed):
    host = PluginHost().load()
    (reg,) = [r for r in host.items("rewards") if r.name == "length_penalty"]
    assert (reg.plugin.name, reg.plugin.distribution) == ("length_reward", "r1zero-length-reward")
    assert reg.obj.components == ("length", "overlong")
    assert reg.obj.score("x" * 4000, "", {})["reward"] == pytest.approx((3072 - 4000) / 1024)


def test_hook_register_backends_cpu_alias(examples_installed):
    backend = PluginHost().load().get("backends", "cpu_alias")
    assert (backend.device, backend.ray_resource) == ("cpu", "r1zero_cpu")


def test_examples_own_tests_pass(author_run):
    """Each package's tests/ as its author runs them (`python -m pytest`), see ``author_run``."""
    for path in EXAMPLE_DIRS:
        (test_file,) = (path / "tests").glob("test_*.py")
        n_tests = test_file.read_text().count("\ndef test_")
        got = author_run.outcomes.get(test_file.name)
        assert got == ["PASSED"] * n_tests, author_run.pytest_output[-3000:]


def test_training_uses_the_examples_by_name(examples_installed, write_recipe, tmp_path):
    path = write_recipe(
        template={"name": "chat_r1"}, backend={"name": "cpu_alias"}, algorithm={"name": "cispo"},
        rewards={"base_acc": {"weight": 1.0},
                 "length_penalty": {"weight": 0.5, "options": {"max_length": 24, "buffer": 8}}},
        actor={"lr": 1.0e-3, "global_batch_size": 2, "micro_batch_size": 4, "train_iters": 1})
    trainer = GRPOTrainer(resolve(load_config(path), PluginHost().load()))
    try:
        trainer.run()
    finally:
        trainer.close()
    assert (trainer.backend.name, trainer.backend.ray_resource) == ("cpu_alias", "r1zero_cpu")
    assert trainer.algorithm.name == "cispo" and trainer.algorithm.policy_loss.__module__ == "r1zero_cispo"
    prompt = trainer.tokenizer.decode(trainer.prompts[0].input_ids)
    assert prompt.startswith("<|bos|>System: A conversation between User and Assistant.")
    assert prompt.endswith("\nAssistant:")

    records = read_metrics(tmp_path / "logs" / "metrics.jsonl")
    assert [r["step"] for r in records] == [1]
    for rec in records:
        assert all(f"reward/{c}" in rec for c in COMPONENTS), sorted(rec)
        # composition: mean of (1.0 x base_acc + 0.5 x length_penalty) = sum of weighted means
        assert rec["reward/mean"] == pytest.approx(
            rec["reward/base_acc/reward"] + 0.5 * rec["reward/length_penalty/reward"])
        assert rec["reward/length_penalty/length"] > 0
        assert rec["reward/errors"] == 0 and rec["reward/timeouts"] == 0
    plots = tmp_path / "logs" / "plots"
    for c in COMPONENTS:
        png = plots / f"reward_{c.replace('/', '_')}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
