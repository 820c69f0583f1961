"""The ``cuda`` backend through the real plugin host. On this CPU-only machine it must report
itself unavailable with torch's own reason; the GPU tests skip with that same reason."""

import pytest
import torch

import r1zero.host.registry
from r1zero.config.load import load_config
from r1zero.host.errors import BackendUnavailable, ConfigError
from r1zero.host.manager import PluginHost
from r1zero.plugins.backends.probe import import_error
from r1zero.engines.vllm import use_vllm


@pytest.fixture(scope="module")
def cuda():
    return PluginHost().load().get("backends", "cuda")


def _cfg(*overrides):
    return load_config(None, ["backend.name=cuda", *overrides])


def _reason(backend):
    ok, reason = backend.is_available()
    return None if ok else str(BackendUnavailable(backend.name, reason))


def test_hook_register_backends_cuda(cuda):
    host = PluginHost().load()
    assert "cuda" in host.names("backends")
    assert host.plugins["cuda"].registered["backends"] == ["cuda"]
    assert (cuda.device, cuda.collective, cuda.ray_resource) == ("cuda", "nccl", "GPU")
    assert cuda.devices_per_node == torch.cuda.device_count()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_unavailable_here_with_torchs_reason(cuda):
    ok, reason = cuda.is_available()
    assert not ok
    assert reason == f"torch.cuda.is_available() is False (torch {torch.__version__} build)"
    if torch.version.cuda is None:        # the CPU wheel installed here: 2.13.0+cpu
        assert reason.endswith("+cpu build)")
    with pytest.raises(BackendUnavailable) as exc:
        cuda.require()
    assert str(exc.value) == f"backend 'cuda' unavailable: {reason}"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_train_engine_refuses_before_loading_anything(cuda):
    cfg = _cfg("model.path=/nonexistent/model")
    with pytest.raises(BackendUnavailable, match="^backend 'cuda' unavailable: torch.cuda"):
        cuda.make_train_engine(cfg, tokenizer=None)


def test_rollout_engine_choice():
    why = "No module named 'vllm'"
    assert use_vllm("auto", None, "cuda") is True
    assert use_vllm("auto", why, "cuda") is False        # falls back to the lean sampler
    assert use_vllm("sampler", None, "cuda") is False
    with pytest.raises(BackendUnavailable) as exc:
        use_vllm("vllm", why, "cuda")
    assert str(exc.value) == ("backend 'cuda' unavailable: rollout.engine is 'vllm' but vllm is "
                              "not importable (No module named 'vllm')")


@pytest.mark.skipif(import_error("vllm") is None, reason="vllm is installed here")
def test_asking_for_vllm_without_it_names_the_module(cuda):
    with pytest.raises(BackendUnavailable, match="vllm is not importable"):
        cuda.make_rollout_engine(_cfg("rollout.engine=vllm"), train_engine=None, tokenizer=None,
                                 stops=[])


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_layout_needs_a_device_count_without_gpus(cuda):
    with pytest.raises(ConfigError, match="backend.devices_per_node: no CUDA device visible"):
        cuda.validate_layout(_cfg())


def test_layout_with_declared_gpus(cuda):
    cfg = _cfg("backend.num_nodes=2", "backend.devices_per_node=8", "actor.tensor_parallel=2",
               "actor.global_batch_size=16", "rollout.n_samples_per_prompt=4")
    plan = cuda.validate_layout(cfg)
    assert (plan.world, plan.actor["dp"], plan.rollout["instances"]) == (16, 8, 16)
    assert plan.actor["sequences_per_rank"] == 8                   # 16 / 8 prompts x 4
    with pytest.raises(ConfigError, match="tensor_parallel 3 x pipeline_parallel 1 = 3"):
        cuda.validate_layout(_cfg("backend.devices_per_node=8", "actor.tensor_parallel=3"))


# -- on a GPU ------------------------------------------------------------------------------------

@pytest.mark.cuda
def test_torch_device_and_nccl_on_gpu(cuda):
    reason = _reason(cuda)
    if reason:
        pytest.skip(reason)
    x = torch.ones(4, device=cuda.torch_device())
    assert x.is_cuda and float(x.sum()) == 4.0
    assert torch.distributed.is_nccl_available()


@pytest.mark.cuda
def test_vllm_rollout_on_gpu(cuda, tmp_path):
    reason = _reason(cuda) or (f"backend 'cuda' unavailable: vllm not importable "
                               f"({import_error('vllm')})" if import_error("vllm") else None)
    if reason:
        pytest.skip(reason)
    from tests.plugins.backends.tiny_model import build_tiny_causal_lm

    model_dir, tokenizer = build_tiny_causal_lm(tmp_path)
    cfg = _cfg(f"model.path={model_dir}", "model.dtype=float32", "rollout.engine=vllm",
               "rollout.max_response_length=8", "rollout.gpu_memory_utilization=0.3",
               "rollout.enforce_eager=true")
    train = cuda.make_train_engine(cfg, tokenizer)
    rollout = cuda.make_rollout_engine(cfg, train, tokenizer, [(tokenizer.eos_token_id,)])
    prompts = [[1, 5, 6], [1, 7]]
    a = rollout.generate(prompts, 2, torch.Generator().manual_seed(0))
    b = rollout.generate(prompts, 2, torch.Generator().manual_seed(0))
    assert list(a.prompt_index) == [0, 0, 1, 1]
    assert [list(r) for r in a.response_ids] == [list(r) for r in b.response_ids]
    rollout.sync_weights()
