"""One test per layout rule, on the seed's A3 numbers (REFERENCE.md §5), plus the whole plan."""

from pathlib import Path

import pytest

from r1zero.config.load import load_config
from r1zero.host.errors import ConfigError
from r1zero.plugins.backends.layout import (LayoutPlan, actor_data_parallel, actor_expert_ranks,
                                            check_node_devices, check_num_layer_list,
                                            experts_per_rank, plan_layout, rollout_expert_groups,
                                            rollout_instances, sequences_per_rank)

RECIPE = Path(__file__).resolve().parents[3] / "examples" / "r1_zero_deepseek_671b.yaml"


def test_check_node_devices():
    assert check_node_devices(24, 16, 16) == 384                     # 24 x 16
    assert check_node_devices(1, 8, 16) == 8                         # part of one node is fine
    with pytest.raises(ConfigError, match="devices_per_node 17 exceeds the 16 devices"):
        check_node_devices(1, 17, 16)
    with pytest.raises(ConfigError, match="24 nodes with 8 of 16 devices each"):
        check_node_devices(24, 8, 16)


def test_actor_data_parallel():
    assert actor_data_parallel(384, 4, 6) == 16                      # 384 / 24
    with pytest.raises(ConfigError, match=r"tensor_parallel 5 x pipeline_parallel 6 = 30 does "
                                          r"not divide the 384 devices"):
        actor_data_parallel(384, 5, 6)


def test_actor_expert_ranks():
    assert actor_expert_ranks(16, 4, 16, moe_tp_extend_ep=True) == 64     # 16 x tp 4
    assert actor_expert_ranks(16, 4, 16, moe_tp_extend_ep=False) == 16
    with pytest.raises(ConfigError, match="expert_parallel 32 does not divide data parallel 16"):
        actor_expert_ranks(16, 4, 32, moe_tp_extend_ep=True)


def test_experts_per_rank():
    assert experts_per_rank(256, 64, "actor") == 4
    with pytest.raises(ConfigError, match=r"256 routed experts do not split over 96 actor "
                                          r"expert ranks \(256 % 96 = 64\)"):
        experts_per_rank(256, 96, "actor")


def test_check_num_layer_list():
    check_num_layer_list([9, 10, 10, 10, 11, 11], 6, 61)
    with pytest.raises(ConfigError, match="sums to 62 but the model has 61 layers"):
        check_num_layer_list([9, 10, 10, 10, 11, 12], 6, 61)
    with pytest.raises(ConfigError, match="has 5 stages but pipeline_parallel is 6"):
        check_num_layer_list([12, 12, 12, 12, 13], 6, 61)
    with pytest.raises(ConfigError, match="empty stage"):
        check_num_layer_list([0, 11, 12, 12, 13, 13], 6, 61)


def test_rollout_instances():
    assert rollout_instances(384, 2, 1) == 192
    with pytest.raises(ConfigError, match=r"rollout tensor_parallel 5 x pipeline_parallel 1 = 5 "
                                          r"does not divide the 384 devices"):
        rollout_instances(384, 5, 1)


def test_rollout_expert_groups():
    assert rollout_expert_groups(192, 64) == 3
    with pytest.raises(ConfigError, match="expert_parallel 128 does not divide the 192 rollout"):
        rollout_expert_groups(192, 128)


def test_sequences_per_rank():
    assert sequences_per_rank(384, 32, 16, 1) == 768                 # 12288 / 16
    with pytest.raises(ConfigError, match=r"384 prompts x 32 samples = 12288 sequences do not "
                                          r"split into micro batches of 5 over data parallel 16"):
        sequences_per_rank(384, 32, 16, 5)                            # 768 % 5 = 3


def test_plan_layout_of_the_seed_recipe():
    plan = plan_layout(load_config(RECIPE), 384)
    assert plan == LayoutPlan(world=384, actor_dp=16, actor_expert_ranks=64,
                              actor_experts_per_rank=4, rollout_instances=192,
                              rollout_expert_groups=3, rollout_experts_per_rank=2,
                              sequences_per_actor_rank=768)
    assert "rollout 192 instances in 3 expert groups" in plan.summary()


def test_plan_layout_names_the_broken_rule():
    cfg = load_config(RECIPE, ["rollout.expert_parallel=3"])
    with pytest.raises(ConfigError, match="256 routed experts do not split over 6 rollout"):
        plan_layout(cfg, 384)      # 192 % 3 = 0 instances, but 256 % (3 x tp 2) != 0
