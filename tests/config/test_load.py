import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from r1zero.config.load import load_config
from r1zero.host.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_and_dotted_overrides():
    cfg = load_config(None, ["actor.lr=1e-5", "rewards.base_acc.weight=0.5", "rollout.top_k=20"])
    assert cfg.actor.lr == 1e-5 and cfg.rewards["base_acc"].weight == 0.5 and cfg.rollout.top_k == 20


def test_unknown_key_names_file_and_suggests(tmp_path):
    f = tmp_path / "r.yaml"
    f.write_text("actor:\n  lrr: 1.0e-6\n")
    with pytest.raises(ConfigError) as err:
        load_config(f)
    assert str(err.value).startswith(f"{f}: actor.lrr: unknown key; did you mean 'actor.lr'?")


def test_wrong_type_names_key(tmp_path):
    f = tmp_path / "r.yaml"
    f.write_text("actor:\n  lr: fast\n")
    with pytest.raises(ConfigError, match=r"r.yaml: actor.lr: expected float, got 'fast'"):
        load_config(f)
    with pytest.raises(ConfigError, match=r"rollout.n_samples_per_prompt: expected int, got float"):
        load_config(None, ["rollout.n_samples_per_prompt=2.5"])
    with pytest.raises(ConfigError, match=r"ray.enabled: expected bool"):
        load_config(None, ["ray.enabled=3"])


def test_constraints_give_both_numbers():
    with pytest.raises(ConfigError, match="global_batch_size 10 must be divisible by mini_batch_size 4"):
        load_config(None, ["actor.global_batch_size=10", "actor.mini_batch_size=4"])
    with pytest.raises(ConfigError, match=r"actor.num_layer_list: num_layer_list \[9, 10, 10, 10, 10, 11\] sums to 60 but the model has 61 layers"):
        load_config(ROOT / "examples/r1_zero_deepseek_671b.yaml",
                    ["actor.num_layer_list=[9,10,10,10,10,11]"])


def test_bad_override_syntax():
    with pytest.raises(ConfigError, match="key.sub=value"):
        load_config(None, ["actor.lr"])


def test_671b_recipe_matches_the_seed():
    """Every value of the seed's training table and the reference's 671B config."""
    cfg = load_config(ROOT / "examples/r1_zero_deepseek_671b.yaml")
    seed_doc = (ROOT.parent / "shared" / "seed" / "r1_zero_deepseek_671b.md")
    if seed_doc.exists():   # the seed's table row: 100 | 1e-6 (constant) | 384 | 32 | 1.0 | 0.001 | 1024 | 2048 | base_acc
        assert "100 1e-6 (constant) 384 32 1.0 0.001 1024 2048 base_acc" in seed_doc.read_text()
    assert cfg.actor.train_iters == 100
    assert cfg.actor.lr == 1e-6 and cfg.actor.lr_scheduler == "constant" and cfg.actor.lr_warmup_steps == 0
    assert cfg.actor.global_batch_size == 384 and cfg.rollout.n_samples_per_prompt == 32
    assert cfg.rollout.temperature == 1.0 and cfg.algorithm.kl_coef == 0.001
    assert cfg.rollout.max_prompt_length == 1024 and cfg.rollout.max_response_length == 2048
    assert list(cfg.rewards) == ["base_acc"] and cfg.rewards["base_acc"].weight == 1.0
    assert cfg.template.name == "deepseek3_r1" and cfg.data.handler == "deepscaler"
    assert cfg.data.map_keys == {"prompt": "problem", "query": "", "response": "answer", "system": ""}
    assert cfg.data.workers == 8
    assert cfg.backend.name == "ascend_a3" and cfg.backend.num_nodes * cfg.backend.devices_per_node == 384
    a = cfg.actor
    assert (a.tensor_parallel, a.pipeline_parallel, a.expert_parallel) == (4, 6, 16)
    assert a.num_layer_list == [9, 10, 10, 10, 11, 11] and sum(a.num_layer_list) == cfg.model.num_layers == 61
    assert a.weight_decay == 0.0 and a.clip_grad == 10000 and (a.adam_beta1, a.adam_beta2) == (0.9, 0.95)
    assert a.mini_batch_size == 384 and a.ppo_epochs == 1 and a.initial_loss_scale == 4096
    assert cfg.algorithm.kl_penalty == "kl" and cfg.algorithm.clip_ratio == 0.2
    assert cfg.algorithm.entropy_coeff == 0.0
    r = cfg.rollout
    assert (r.tensor_parallel, r.pipeline_parallel, r.expert_parallel) == (2, 1, 64)
    assert (r.max_num_seqs, r.max_model_len, r.max_num_batched_tokens) == (64, 3072, 1024)
    assert r.gpu_memory_utilization == 0.75 and (r.top_p, r.top_k, r.min_p) == (1.0, -1, 0.0)
    assert cfg.ray.enabled and cfg.ray.integrated_worker


def _same(written, loaded) -> bool:
    """A value as the YAML file writes it vs as the config holds it (YAML reads 1e-6 as text)."""
    if isinstance(written, dict):
        return all(_same(v, loaded[k]) for k, v in written.items())
    if isinstance(written, str) and isinstance(loaded, float):
        return float(written) == loaded
    return written == loaded


def test_every_example_recipe_loads_keeps_every_key_and_resolves():
    from r1zero.config.load import dump_yaml, to_dict
    from r1zero.host.manager import PluginHost
    from r1zero.data.pipeline import resolve

    paths = sorted((ROOT / "examples").glob("*.yaml"))
    assert paths
    host = PluginHost().load()
    for path in paths:
        written = yaml.safe_load(path.read_text(encoding="utf-8"))
        cfg = load_config(path)
        loaded = to_dict(cfg)
        for section, values in written.items():      # nothing in the file is dropped or changed
            assert _same(values, loaded[section]), (path.name, section)
        assert load_config(None, base=yaml.safe_load(dump_yaml(cfg))) == cfg   # show round-trips
        resolved = resolve(cfg, host)              # every plugin name it uses is registered
        assert (resolved.backend.name, resolved.template.name, resolved.handler.name) == (
            cfg.backend.name, cfg.template.name, cfg.data.handler)
        assert [s.name for s, _ in resolved.scorers] == list(cfg.rewards)
        assert resolved.algorithm.name == cfg.algorithm.name


def test_config_show_cli(tmp_path):
    out = subprocess.run([sys.executable, "-m", "r1zero.cli.main", "config", "show",
                          str(ROOT / "examples/r1_zero_deepseek_671b.yaml"), "actor.lr=2e-6"],
                         capture_output=True, text=True, check=True).stdout
    assert yaml.safe_load(out)["actor"]["lr"] == 2e-6
    bad = subprocess.run([sys.executable, "-m", "r1zero.cli.main", "config", "show",
                          str(ROOT / "examples/r1_zero_deepseek_671b.yaml"), "actr.lr=1"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "did you mean 'actor'" in bad.stderr
