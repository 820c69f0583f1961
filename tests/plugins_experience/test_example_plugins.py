"""The three example packages under examples/plugins/, pip-installed into this environment:
``r1zero plugins`` lists them, their own tests pass, and a real GRPO run uses all three by name
from the config (reward composed with base_acc; every component logged and plotted)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from r1zero.config_load import load_config
from r1zero.manager import PluginHost
from r1zero.trainer.grpo import GRPOTrainer
from r1zero.trainer.metrics import read_metrics

EXPECTED = {   # entry-point name -> (distribution, what it registers)
    "length_reward": ("r1zero-length-reward", {"rewards": ["length_penalty"]}),
    "chat_template": ("r1zero-template-example", {"templates": ["chat_r1"]}),
    "cpu_alias": ("r1zero-cpu-alias", {"backends": ["cpu_alias"]}),
}
COMPONENTS = ["base_acc/reward", "base_acc/format", "base_acc/accuracy",
              "length_penalty/reward", "length_penalty/length", "length_penalty/overlong"]


def plugins_json(env: dict | None = None) -> dict[str, dict]:
    out = subprocess.run([sys.executable, "-m", "r1zero.cli", "plugins", "--json"], env=env,
                         capture_output=True, text=True, check=True).stdout
    return {row["name"]: row for row in json.loads(out)}


def test_cli_lists_the_installed_examples(examples_installed):
    rows = plugins_json()
    for name, (dist, registered) in EXPECTED.items():
        row = rows[name]
        assert (row["source"], row["distribution"], row["version"]) == ("installed", dist, "0.1.0")
        assert row["registered"] == registered and row["error"] is None
    assert rows["base_acc"]["source"] == "built-in"      # the built-ins are still there


def test_hook_register_rewards(examples_installed):
    host = PluginHost().load()
    (reg,) = [r for r in host.items("rewards") if r.name == "length_penalty"]
    assert (reg.plugin.name, reg.plugin.distribution) == ("length_reward", "r1zero-length-reward")
    assert reg.obj.components == ("length", "overlong")
    assert reg.obj.score("x" * 4000, "", {})["reward"] == pytest.approx((3072 - 4000) / 1024)


def test_hook_register_backends_cpu_alias(examples_installed):
    backend = PluginHost().load().get("backends", "cpu_alias")
    assert (backend.device, backend.ray_resource) == ("cpu", "r1zero_cpu")


def test_examples_own_tests_pass(examples_installed):
    """Each package's tests/ as its author runs them (`python -m pytest -q`), all in one go."""
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           *map(str, examples_installed)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "failed" not in proc.stdout


def test_training_uses_the_examples_by_name(examples_installed, write_recipe, tmp_path):
    path = write_recipe(
        template={"name": "chat_r1"}, backend={"name": "cpu_alias"},
        rewards={"base_acc": {"weight": 1.0},
                 "length_penalty": {"weight": 0.5, "options": {"max_length": 24, "buffer": 8}}})
    trainer = GRPOTrainer(load_config(path), host=PluginHost().load())
    try:
        trainer.run()
    finally:
        trainer.close()
    assert (trainer.backend.name, trainer.backend.ray_resource) == ("cpu_alias", "r1zero_cpu")
    prompt = trainer.tokenizer.decode(trainer.prompts[0].input_ids)
    assert prompt.startswith("<|bos|>System: A conversation between User and Assistant.")
    assert prompt.endswith("\nAssistant:")

    records = read_metrics(tmp_path / "logs" / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 2]
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
