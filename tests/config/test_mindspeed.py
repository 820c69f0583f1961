"""``r1zero config import`` on a config in the shape of MindSpeed-RL's R1-Zero GRPO configs, with
the seed recipe's values (DeepSeek-V3-671B, 384 dies): what maps, what is named as unmapped."""

import pytest
import yaml

from r1zero.cli.main import main
from r1zero.config.load import load_config
from r1zero.config.mindspeed import import_mindspeed

SEED_SHAPED = {
    "defaults": [{"model": ["deepseekv3_671b"]}],
    "megatron_training": {
        "model": "deepseekv3_671b", "use_flash_attn": True, "bf16": True,
        "use_distributed_optimizer": True, "tokenizer_type": "PretrainedFromHF",
        "tokenizer_name_or_path": "./DeepSeek-V3-hf/", "global_batch_size": 384,
        "seq_length": 1024, "save_interval": 100, "train_iters": 1000, "stage": "ray_grpo",
        "data_path": "./deepseek/deepscaler", "swap_optimizer": True, "no_shuffle": False},
    "actor_config": {
        "model": "deepseekv3_671b", "micro_batch_size": 1, "moe_tp_extend_ep": True,
        "expert_model_parallel_size": 16, "tensor_model_parallel_size": 4,
        "pipeline_model_parallel_size": 6, "num_layer_list": "9,10,10,10,11,11",
        "recompute_granularity": "full", "recompute_method": "block", "lr": "1e-6",
        "lr_decay_style": "constant", "min_lr": 0.0, "weight_decay": 0.0,
        "lr_warmup_fraction": 0.0, "clip_grad": 10000.0, "adam_beta1": 0.9, "adam_beta2": 0.95,
        "initial_loss_scale": 4096, "finetune": True, "load": "./ckpt/", "save": "./ckpt/"},
    "rl_config": {
        "use_integrated_worker": True, "use_dynamic_bsz": True, "max_packing_token_size": 4096,
        "gamma": 1.0, "lam": 0.95, "adv_estimator": "group_norm", "kl_penalty": "kl",
        "kl_ctrl_type": "fixed", "init_kl_coef": 0.001, "mini_batch_size": 384,
        "use_remove_padding": True, "max_prompt_length": 1024, "epochs": 1, "clip_ratio": 0.2,
        "entropy_coeff": 0, "n_samples_per_prompt": 32, "rule_reward": True,
        "verifier_function": ["base_acc"], "verifier_weight": [1.0],
        "reward_dispatch_size": 32, "actor_resource": {"num_npus": 384}},
    "generate_config": {
        "trust_remote_code": True, "infer_tensor_parallel_size": 2,
        "infer_pipeline_parallel_size": 1, "infer_expert_parallel_size": 64, "max_num_seqs": 64,
        "max_model_len": 3072, "max_num_batched_tokens": 1024, "dtype": "bfloat16",
        "gpu_memory_utilization": 0.75, "enforce_eager": False, "torchair_graph": True,
        "offload_train_optimizer": False, "offload_train_grad": True, "offload_train_param": True,
        "sampling_config": {"logprobs": 1, "max_tokens": 2048, "top_p": 1, "top_k": -1,
                            "min_p": 0, "temperature": 1.0, "detokenize": False}},
}


def test_seed_shaped_config_maps_the_recipe():
    recipe, mapped, unmapped = import_mindspeed(SEED_SHAPED, name="seed")
    cfg = load_config(None, base=recipe)
    a, r, alg = cfg.actor, cfg.rollout, cfg.algorithm
    assert (a.global_batch_size, a.mini_batch_size, a.train_iters, a.lr) == (384, 384, 1000, 1e-6)
    assert (a.tensor_parallel, a.pipeline_parallel, a.expert_parallel) == (4, 6, 16)
    assert a.num_layer_list == [9, 10, 10, 10, 11, 11] and a.moe_tp_extend_ep
    assert (r.n_samples_per_prompt, r.max_prompt_length, r.max_response_length) == (32, 1024, 2048)
    assert (r.tensor_parallel, r.expert_parallel, r.max_model_len) == (2, 64, 3072)
    assert (alg.kl_penalty, alg.kl_coef, alg.clip_ratio) == ("kl", 0.001, 0.2)
    assert (cfg.backend.name, cfg.backend.num_nodes, cfg.backend.devices_per_node) == ("ascend_a3", 24, 16)
    assert cfg.rewards["base_acc"].weight == 1.0 and cfg.model.dtype == "bfloat16"
    assert cfg.model.tokenizer == "./DeepSeek-V3-hf/" and cfg.model.name == "deepseekv3_671b"
    assert mapped["rl_config.init_kl_coef"] == "algorithm.kl_coef"
    # every source key is mapped, implied, or named with a reason
    assert set(unmapped) == {
        "megatron_training.model", "megatron_training.use_flash_attn", "megatron_training.seq_length",
        "megatron_training.data_path", "actor_config.recompute_method",
        "rl_config.reward_dispatch_size", "generate_config.torchair_graph"}
    assert "data.input" in unmapped["megatron_training.data_path"]


def test_values_that_differ_from_r1zero_behaviour_are_named():
    src = {"rl_config": {"gamma": 0.99, "kl_penalty": "bogus"},
           "actor_config": {"lr_decay_style": "WSD"}, "critic_config": {"lr": 1.0}}
    _, mapped, unmapped = import_mindspeed(src)
    assert "differs" in unmapped["rl_config.gamma"]
    assert "not convertible" in unmapped["rl_config.kl_penalty"]
    assert "WSD" in unmapped["actor_config.lr_decay_style"]
    assert "not a MindSpeed-RL GRPO section" in unmapped["critic_config.lr"]
    assert not mapped


def test_warmup_fraction_becomes_steps():
    recipe, mapped, unmapped = import_mindspeed({"megatron_training": {"train_iters": 200},
                                                 "actor_config": {"lr_warmup_fraction": 0.05}})
    assert recipe["actor"]["lr_warmup_steps"] == 10 and not unmapped


def test_config_import_command_writes_a_loadable_recipe(tmp_path, capsys):
    src = tmp_path / "grpo_seed.yaml"
    src.write_text(yaml.safe_dump(SEED_SHAPED))
    out = tmp_path / "recipe.yaml"
    assert main(["config", "import", str(src), "--output", str(out)]) == 0
    captured = capsys.readouterr()
    assert "7 not mapped" in captured.out
    assert "r1zero: not mapped: generate_config.torchair_graph:" in captured.err
    text = out.read_text()
    assert "#   megatron_training.use_flash_attn:" in text
    assert load_config(out).actor.global_batch_size == 384


def test_config_import_errors_name_the_file(tmp_path, capsys):
    bad = tmp_path / "x.yaml"
    bad.write_text("- a list\n")
    assert main(["config", "import", str(bad)]) == 2
    assert "x.yaml: top level must be a mapping" in capsys.readouterr().err
    assert main(["config", "import", str(tmp_path / "missing.yaml")]) == 2
