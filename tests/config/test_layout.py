"""One test per layout rule (``r1zero.config.layout``), on the seed's A3 numbers."""

import pytest

from r1zero.config.layout import (actor_data_parallel, actor_expert_ranks, check_node_devices,
                                  experts_per_rank, heads_split, prompts_per_rank,
                                  resolve_engine, rollout_expert_groups, rollout_instances,
                                  stage_layers)
from r1zero.host.errors import ConfigError


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


def test_stage_layers():
    assert stage_layers([9, 10, 10, 10, 11, 11], 6, 61) == [9, 10, 10, 10, 11, 11]
    assert stage_layers(None, 2, 4) == [2, 2] and stage_layers(None, 2, None) is None
    with pytest.raises(ConfigError, match="sums to 62 but the model has 61 layers"):
        stage_layers([9, 10, 10, 10, 11, 12], 6, 61)
    with pytest.raises(ConfigError, match="has 5 stages but pipeline_parallel is 6"):
        stage_layers([12, 12, 12, 12, 13], 6, 61)
    with pytest.raises(ConfigError, match="empty stage"):
        stage_layers([0, 11, 12, 12, 13, 13], 6, 61)
    with pytest.raises(ConfigError, match=r"61 layers do not split evenly over pipeline_parallel "
                                          r"6 \(61 % 6 = 1\); set num_layer_list"):
        stage_layers(None, 6, 61)


def test_resolve_engine():
    assert resolve_engine("auto", 1, 1, 1) == "torch"
    assert resolve_engine("auto", 4, 6, 16) == "megatron"
    assert resolve_engine("megatron", 1, 1, 1) == "megatron"
    with pytest.raises(ConfigError, match=r"actor.engine 'torch' does not implement pipeline "
                                          r"parallelism \(pipeline_parallel 2\)"):
        resolve_engine("torch", 1, 2, 1)


def test_heads_split():
    heads_split(128, 128, 4, "actor")                                # 128 / 4 = 32 each
    with pytest.raises(ConfigError, match=r"actor tensor_parallel 4 does not divide the model's "
                                          r"2 key/value heads \(2 % 4 = 2\)"):
        heads_split(8, 2, 4, "actor")


def test_rollout_instances():
    assert rollout_instances(384, 2, 1) == 192
    with pytest.raises(ConfigError, match=r"rollout tensor_parallel 5 x pipeline_parallel 1 = 5 "
                                          r"does not divide the 384 devices"):
        rollout_instances(384, 5, 1)


def test_rollout_expert_groups():
    assert rollout_expert_groups(192, 64) == 3
    with pytest.raises(ConfigError, match="expert_parallel 128 does not divide the 192 rollout"):
        rollout_expert_groups(192, 128)


def test_prompts_per_rank():
    assert prompts_per_rank(384, 384, 16) == 24                     # 384 / dp 16
    with pytest.raises(ConfigError, match=r"actor mini_batch_size 3 prompts do not split over "
                                          r"data parallel 2 \(3 % 2 = 1\)"):
        prompts_per_rank(6, 3, 2)
    with pytest.raises(ConfigError, match=r"global_batch_size 6 prompts do not split over data "
                                          r"parallel 4 \(6 % 4 = 2\)"):
        prompts_per_rank(6, 6, 4)
