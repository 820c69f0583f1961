"""The ``ascend_a3`` backend through the real plugin host: what needs no NPU is tested here
(availability report, MindSpeed-RL's environment, the A3 layout, the factories' refusals);
the NPU tests skip with the backend's own reason."""

import os
from pathlib import Path

import pytest

import r1zero.host.registry
from r1zero.config.load import load_config
from r1zero.host.errors import BackendUnavailable, ConfigError
from r1zero.host.manager import PluginHost
from r1zero.plugins.backends.ascend_a3 import train_requirements
from r1zero.plugins.backends.probe import import_error

RECIPE = Path(__file__).resolve().parents[3] / "examples" / "r1_zero_deepseek_671b.yaml"
NO_TORCH_NPU = import_error("torch_npu")
needs_no_torch_npu = pytest.mark.skipif(NO_TORCH_NPU is None, reason="torch_npu is installed here")

# MindSpeed-RL's runtime_env.yaml + its launch script's exports, with VLLM_DP_SIZE = rollout EP.
SEED_ENV = {
    "HCCL_CONNECT_TIMEOUT": "1800", "HCCL_EXEC_TIMEOUT": "3600", "HCCL_BUFFSIZE": "256",
    "CUDA_DEVICE_MAX_CONNECTIONS": "1", "TASK_QUEUE_ENABLE": "2",
    "PYTORCH_NPU_ALLOC_CONF": "expandable_segments:True", "VLLM_USE_V1": "1",
    "VLLM_DP_SIZE": "64", "USING_LCCL_COM": "0", "CPU_AFFINITY_CONF": "1",
    "RAY_EXPERIMENTAL_NOSET_ASCEND_RT_VISIBLE_DEVICES": "true",
}


@pytest.fixture(scope="module")
def a3():
    return PluginHost().load().get("backends", "ascend_a3")


@pytest.fixture(scope="module")
def seed_cfg():
    return load_config(RECIPE)


def test_hook_register_backends_ascend_a3(a3):
    host = PluginHost().load()
    assert "ascend_a3" in host.names("backends")          # collects the registrations
    assert host.plugins["ascend_a3"].registered["backends"] == ["ascend_a3"]
    assert (a3.device, a3.collective, a3.ray_resource, a3.devices_per_node) == ("npu", "hccl", "NPU", 16)


@needs_no_torch_npu
def test_unavailable_names_the_missing_module(a3):
    ok, reason = a3.is_available()
    assert not ok and reason == f"torch_npu not importable ({NO_TORCH_NPU})"
    with pytest.raises(BackendUnavailable) as exc:
        a3.require()
    assert str(exc.value) == "backend 'ascend_a3' unavailable: torch_npu not importable " \
                             "(No module named 'torch_npu')"


def test_env_of_the_seed_recipe(a3, seed_cfg):
    assert a3.env_vars(seed_cfg) == SEED_ENV
    cfg = load_config(RECIPE, ["backend.env.HCCL_CONNECT_TIMEOUT='3600'", "backend.env.HCCL_IF_BASE_PORT='48000'",
                               "rollout.expert_parallel=32"])
    env = a3.env_vars(cfg)
    assert env["HCCL_CONNECT_TIMEOUT"] == "3600"           # backend.env wins
    assert env["HCCL_IF_BASE_PORT"] == "48000" and env["VLLM_DP_SIZE"] == "32"


def test_setup_exports_env_without_clobbering(a3, seed_cfg, monkeypatch):
    for key in SEED_ENV:                # set first, so that monkeypatch removes what setup()
        monkeypatch.setenv(key, "")     # exports (a VLLM_DP_SIZE left behind makes a later
        monkeypatch.delenv(key)         # in-process vLLM engine start in data-parallel mode)
    monkeypatch.setenv("HCCL_BUFFSIZE", "512")             # the operator's value stays
    a3.setup(seed_cfg)
    assert os.environ["HCCL_BUFFSIZE"] == "512"
    assert os.environ["TASK_QUEUE_ENABLE"] == "2" and os.environ["VLLM_DP_SIZE"] == "64"


def test_layout_of_the_seed_recipe(a3, seed_cfg):
    plan = a3.validate_layout(seed_cfg)
    assert (plan.world, plan.actor["dp"], plan.actor["expert_ranks"]) == (384, 16, 64)
    assert (plan.rollout["instances"], plan.rollout["expert_groups"]) == (192, 3)
    assert plan.device_memory == 64 * 1024 ** 3 and plan.engine == "megatron"


def test_layout_rejects_more_dies_than_an_a3_node(a3):
    with pytest.raises(ConfigError, match="devices_per_node 32 exceeds the 16 devices"):
        a3.validate_layout(load_config(RECIPE, ["backend.devices_per_node=32", "backend.num_nodes=12"]))


def test_train_requirements(seed_cfg):
    assert train_requirements(seed_cfg) == ("torch_npu", "megatron.core", "mindspeed")
    small = load_config(None, ["backend.name=ascend_a3"])
    assert train_requirements(small) == ("torch_npu",)


@needs_no_torch_npu
def test_train_engine_refuses_with_the_reason(a3, seed_cfg):
    with pytest.raises(BackendUnavailable, match="^backend 'ascend_a3' unavailable: torch_npu not"):
        a3.make_train_engine(seed_cfg, tokenizer=None)


@pytest.mark.skipif(import_error("vllm") is None, reason="vllm is installed here")
def test_rollout_engine_vllm_refuses_with_the_module(a3, seed_cfg):
    with pytest.raises(BackendUnavailable, match="rollout.engine is 'vllm' but vllm is not importable"):
        a3.make_rollout_engine(seed_cfg, train_engine=None, tokenizer=None, stops=[])


# -- on an NPU -----------------------------------------------------------------------------------

@pytest.mark.ascend
def test_small_model_trains_on_one_die(a3, tmp_path):
    ok, reason = a3.is_available()
    if not ok:
        pytest.skip(str(BackendUnavailable(a3.name, reason)))
    from tests.plugins.backends.tiny_model import build_tiny_causal_lm

    model_dir, tokenizer = build_tiny_causal_lm(tmp_path)
    cfg = load_config(None, ["backend.name=ascend_a3", f"model.path={model_dir}",
                             "model.dtype=float32", "rollout.engine=sampler"])
    engine = a3.make_train_engine(cfg, tokenizer)
    assert next(engine.model.parameters()).device.type == "npu"
