"""The plan of the seed's 671B recipe, every failure collected, memory arithmetic, and the
commands that use it (``r1zero plan``, ``r1zero launch``)."""

import json
from pathlib import Path

import pytest

from r1zero.cli.main import main
from r1zero.config import memory as M
from r1zero.config.load import load_config
from r1zero.config.plan import GIB, make_plan
from r1zero.host.errors import ConfigError

RECIPE = Path(__file__).resolve().parents[2] / "examples" / "r1_zero_deepseek_671b.yaml"
A3 = 64 * GIB


def test_plan_of_the_seed_recipe():
    plan = make_plan(load_config(RECIPE), 384, backend="ascend_a3", device_memory=A3)
    assert plan.ok and plan.engine == "megatron"
    assert plan.actor == {"dp": 16, "tp": 4, "pp": 6, "ep": 16, "moe_tp_extend_ep": True,
                          "layers_per_stage": [9, 10, 10, 10, 11, 11], "expert_ranks": 64,
                          "experts_per_rank": 4, "prompts_per_rank": 24,
                          "sequences_per_rank": 768}
    # 384 prompts over 192 instances of 2 dies: 2 prompts x 32 samples each
    assert plan.rollout == {"tp": 2, "pp": 1, "ep": 64, "instances": 192, "expert_groups": 3,
                            "experts_per_rank": 2, "prompts_per_instance": 2,
                            "sequences_per_instance": 64}
    m = plan.memory
    assert round(m["total_params"] / 1e9) == 671                      # DeepSeek-V3's 671 B
    # swap_optimizer: 1/16 of the Adam state on the die during the step, so the first stages'
    # 1F1B activations decide the peak (19.3 GiB at stage 1; 40.0 GiB at stage 5 unswapped)
    assert m["peak_stage"] == 1 and 15 * GIB < m["peak_bytes"] < 25 * GIB
    # the per-die weight share: the dense part / tp 2, the routed experts / (tp 2 x ep 64);
    # vLLM's KV cache gets 0.75 x 64 GiB = 48 GiB minus that share (25.5 GiB) = 22.5 GiB
    assert round(m["rollout_weight_bytes"] / GIB, 1) == 25.5
    assert m["rollout_kv_budget_bytes"] == int(0.75 * A3 - m["rollout_weight_bytes"])


def test_plan_of_mindspeed_rls_current_671b_layout():
    """examples/r1_zero_deepseek_671b_tp4pp8ep8.yaml: 256 dies, TP 4 x PP 8 x EP 8, rollout
    TP 4 x EP 64. Against the seed's layout (19.3 GiB peak, 25.5 GiB rollout weights per die):
    fewer expert ranks (32 vs 64) hold more of the experts (8 per rank vs 4), so training
    peaks higher (25.6 GiB at stage 2); the rollout's TP 4 halves its weights per die."""
    path = RECIPE.with_name("r1_zero_deepseek_671b_tp4pp8ep8.yaml")
    plan = make_plan(load_config(path), 256, backend="ascend_a3", device_memory=A3)
    assert plan.ok and plan.engine == "megatron"
    assert plan.actor == {"dp": 8, "tp": 4, "pp": 8, "ep": 8, "moe_tp_extend_ep": True,
                          "layers_per_stage": [7, 7, 8, 8, 8, 8, 8, 7], "expert_ranks": 32,
                          "experts_per_rank": 8, "prompts_per_rank": 64,
                          "sequences_per_rank": 1024}
    assert plan.rollout["tp"] == 4 and plan.rollout["ep"] == 64 and plan.rollout["instances"] == 64
    m = plan.memory
    assert m["peak_stage"] == 2 and 24 * GIB < m["peak_bytes"] < 27 * GIB
    seed = make_plan(load_config(RECIPE), 384, backend="ascend_a3", device_memory=A3).memory
    assert m["peak_bytes"] > seed["peak_bytes"]
    assert m["rollout_weight_bytes"] < 0.55 * seed["rollout_weight_bytes"]


def test_memory_of_one_stage_by_hand():
    # 2 layers, h 8, 2 heads, inter 16, vocab 32, untied; tp 2, one stage, bf16
    arch = {"hidden_size": 8, "num_attention_heads": 2, "intermediate_size": 16, "vocab_size": 32}
    p = M.layer_params(arch)
    assert p["attention"] == 4 * 8 * 8 and p["dense_mlp"] == 3 * 8 * 16       # 256, 384
    b = M.stage_bytes(arch, [2], 0, tp=2, expert_ranks=1, dp=1, ep=1, dtype_bytes=2,
                      distributed_optimizer=False)
    # per layer (256 + 384) / 2 + norms 16 = 336; x2 = 672; embedding 256/2 + head 256/2 + 8
    assert b["params"] == 672 + 128 + 128 + 8
    assert b["param_bytes"] == 2 * 936 and b["optimizer_bytes"] == 12 * 936


def test_every_failure_is_collected_with_its_numbers():
    cfg = load_config(RECIPE, ["actor.tensor_parallel=5", "rollout.expert_parallel=3"])
    plan = make_plan(cfg, 384, backend="ascend_a3", device_memory=A3)
    messages = [f["message"] for f in plan.failures]
    assert messages == [
        "actor tensor_parallel 5 x pipeline_parallel 6 = 30 does not divide the 384 devices",
        "actor tensor_parallel 5 does not divide the model's 128 attention heads (128 % 5 = 3)",
        "256 routed experts do not split over 6 rollout expert ranks (256 % 6 = 4)"]
    with pytest.raises(ConfigError, match="cannot run on backend 'ascend_a3' \\(384 devices\\)"):
        plan.require()


def test_memory_checks_against_the_device():
    # what the seed's recompute, distributed optimizer and optimizer swap buy: without them the
    # peak exceeds the die, and the optimizer kept during rollout crowds out vLLM's 0.75
    cfg = load_config(RECIPE, ["actor.distributed_optimizer=false", "actor.swap_optimizer=false",
                               "actor.recompute=none", "actor.micro_batch_size=2",
                               "actor.use_remove_padding=false"])   # padded rows of 2
    plan = make_plan(cfg, 384, backend="ascend_a3", device_memory=A3)
    keys = [f["key"] for f in plan.failures]
    assert keys == ["actor", "rollout.gpu_memory_utilization"]
    assert "exceeds the 64.0 GiB of one device" in plan.failures[0]["message"]


def test_plan_command_prints_the_384_die_layout(capsys):
    assert main(["plan", str(RECIPE)]) == 0
    out = capsys.readouterr().out
    assert "backend ascend_a3: 384 devices, 64.0 GiB each" in out
    assert "dp 16 x tp 4 x pp 6; ep 16 (x tp: moe_tp_extend_ep) -> 64 expert ranks" in out
    assert "192 instances" in out and "2 prompts = 64 sequences per instance" in out
    assert "KV cache budget 22.5 GiB per die" in out and "every layout check passes" in out
    assert main(["plan", str(RECIPE), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["actor"]["experts_per_rank"] == 4


def test_plan_command_refuses_with_numbers(capsys):
    assert main(["plan", str(RECIPE), "actor.expert_parallel=32"]) == 2
    captured = capsys.readouterr()
    assert "FAILED  1 check(s)" in captured.out
    assert captured.err.startswith("r1zero: error: the layout cannot run")
    assert "actor expert_parallel 32 does not divide data parallel 16" in captured.err


def test_launch_refuses_before_writing_a_script(tmp_path, capsys):
    out = tmp_path / "launch.sh"
    rc = main(["launch", str(RECIPE), "actor.pipeline_parallel=5", "--master-addr", "10.0.0.1",
               "--output", str(out)])
    assert rc == 2 and not out.exists()
    assert "actor.num_layer_list" in capsys.readouterr().err


def test_plan_gives_the_routing_replay_routes_per_step(capsys):
    # 384 prompts x 32 samples x 2048 response tokens = 25,165,824 tokens; DeepSeek-V3: 61
    # layers, the first 3 dense -> 58 MoE layers, top 8; int16: 25,165,824 x 58 x 8 x 2 bytes
    plan = make_plan(load_config(RECIPE, ["algorithm.routing_replay=true"]), 384,
                     backend="ascend_a3", device_memory=A3)
    rt = plan.memory["routes"]
    assert rt == {"replay": True, "tokens": 25_165_824, "moe_layers": 58, "top_k": 8,
                  "bytes_per_step": 23_353_884_672,                       # 21.75 GiB
                  "bytes_per_dp_rank": 768 * 2048 * 58 * 8 * 2}           # 1.36 GiB, dp 16
    assert main(["plan", str(RECIPE)]) == 0
    assert ("routes  routing replay off: 25165824 response tokens x 58 MoE layers x top 8 "
            "int16 = 21.8 GiB per step on the host, 1.4 GiB per dp rank") in capsys.readouterr().out
    # a dense model has no routes line
    assert M.routes_bytes({"hidden_size": 8}, 4, 100)["bytes"] == 0
