"""HF <-> mcore weight mapping of the megatron engine (pure tensors, no process group), and the
engine's refusals on a machine without a CUDA/NPU device."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("megatron.core", reason="megatron-core not installed: pip install '.[megatron]'")

from r1zero.host.errors import BackendUnavailable, ConfigError  # noqa: E402
from r1zero.engines.megatron import model as M  # noqa: E402


def _facts(tied=True):
    return {"layers": 2, "hidden": 8, "heads": 4, "kv_heads": 2, "head_dim": 2, "ffn": 12,
            "vocab": 10, "qkv_bias": True, "tied": tied}


def _hf(f, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)   # noqa: E731
    h, d = f["hidden"], f["head_dim"]
    sd = {"model.embed_tokens.weight": r(f["vocab"], h), "model.norm.weight": r(h)}
    if not f["tied"]:
        sd["lm_head.weight"] = r(f["vocab"], h)
    for i in range(f["layers"]):
        p = f"model.layers.{i}."
        sd.update({p + "input_layernorm.weight": r(h), p + "post_attention_layernorm.weight": r(h),
                   p + "self_attn.q_proj.weight": r(f["heads"] * d, h),
                   p + "self_attn.k_proj.weight": r(f["kv_heads"] * d, h),
                   p + "self_attn.v_proj.weight": r(f["kv_heads"] * d, h),
                   p + "self_attn.q_proj.bias": r(f["heads"] * d),
                   p + "self_attn.k_proj.bias": r(f["kv_heads"] * d),
                   p + "self_attn.v_proj.bias": r(f["kv_heads"] * d),
                   p + "self_attn.o_proj.weight": r(h, f["heads"] * d),
                   p + "mlp.gate_proj.weight": r(f["ffn"], h), p + "mlp.up_proj.weight": r(f["ffn"], h),
                   p + "mlp.down_proj.weight": r(h, f["ffn"])})
    return sd


@pytest.mark.parametrize("tp", [1, 2])
def test_megatron_weights_round_trip_exactly(tp):
    f = _facts(tied=False)
    hf = _hf(f)
    full = M.hf_to_mcore(f, hf, tp)
    assert full["embedding.word_embeddings.weight"].shape[0] == M.padded_vocab(10, tp)
    back = {}
    for i in range(f["layers"]):
        prefix = f"decoder.layers.{i}."
        layer = {k[len(prefix):]: v for k, v in full.items() if k.startswith(prefix)}
        back.update(M.mcore_to_hf_layer(f, layer, i, tp))
    for k, v in back.items():
        assert torch.equal(v, hf[k]), k
    assert len(back) == len(hf) - 3          # embeddings, final norm and head are mapped by name


def test_megatron_qkv_rows_group_by_group():
    # 4 query heads in 2 groups, head_dim 2: rows [q0 q1 k0 v0 | q2 q3 k1 v1], 2 rows each
    f = _facts()
    q, k, v = (torch.arange(8.0), torch.arange(4.0) + 100, torch.arange(4.0) + 200)
    assert M._qkv(f, q, k, v).tolist() == [0, 1, 2, 3, 100, 101, 200, 201,
                                           4, 5, 6, 7, 102, 103, 202, 203]


def test_megatron_fc1_rank_by_rank():
    # ffn 12 at tp 2: rank 0 holds [gate rows 0-5; up rows 0-5], rank 1 the rest
    f = _facts()
    hf = _hf(f)
    fc1 = M.hf_to_mcore(f, hf, 2)["decoder.layers.0.mlp.linear_fc1.weight"]
    rank0 = fc1.chunk(2)[0]
    assert torch.equal(rank0[:6], hf["model.layers.0.mlp.gate_proj.weight"][:6])
    assert torch.equal(rank0[6:], hf["model.layers.0.mlp.up_proj.weight"][:6])


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_megatron_engine_refuses_without_a_device():
    from r1zero.engines.megatron.engine import require_megatron

    with pytest.raises(BackendUnavailable, match=r"megatron-core needs a CUDA or NPU device "
                                                 r"\(torch.cuda.current_device\(\): "):
        require_megatron()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_megatron_train_engine_is_refused_before_anything_runs_without_a_device():
    """``r1zero train`` picks the megatron engine (pp > 1) and refuses it when the backend's
    engine class is chosen (before data, model or Ray), naming the reason."""
    from r1zero.config.load import load_config
    from r1zero.plugins.backends.cpu import CPUBackend

    cfg = load_config(None, ["actor.pipeline_parallel=2", "backend.devices_per_node=2"])
    with pytest.raises(BackendUnavailable, match=r"megatron-core needs a CUDA or NPU device"):
        CPUBackend().refuse_unimplemented(cfg, world=2)


def test_megatron_refuses_other_model_types_by_name():
    from transformers import MixtralConfig

    with pytest.raises(ConfigError, match=r"model.path: the megatron engine builds llama, qwen2, "
                                          r"deepseek_v3 models, not model_type 'mixtral'"):
        M.arch_facts(MixtralConfig())


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_megatron_convert_in_process_needs_a_device(tmp_path, capsys):
    from r1zero.cli.main import main

    cfg = tmp_path / "r.yaml"
    cfg.write_text("model: {path: x}\n")
    rc = main(["convert", str(cfg), "--load-dir", str(tmp_path), "--save-dir", str(tmp_path / "o"),
               "--in-process", "hf-to-mcore"])
    assert rc == 2
    assert "megatron-core needs a CUDA or NPU device" in capsys.readouterr().err


def test_megatron_engine_declares_the_keys_it_acts_on():
    from r1zero.config.engine_keys import TRAIN_ENGINE_KEYS, unimplemented
    from r1zero.config.load import load_config
    from r1zero.engines.megatron.engine import MegatronTrainEngine

    cfg = load_config(None, ["actor.distributed_optimizer=true", "actor.recompute=full",
                             "actor.use_remove_padding=true", "actor.swap_optimizer=true",
                             "model.dtype=bfloat16", "actor.initial_loss_scale=4096",
                             "rollout.offload_train_params=true",
                             "rollout.offload_train_grads=true",
                             "rollout.offload_train_optimizer=true"])
    assert unimplemented(cfg, MegatronTrainEngine, TRAIN_ENGINE_KEYS) == [
        "rollout.offload_train_optimizer: True is not implemented by engine 'megatron'"]


def test_megatron_pack_pads_the_width_to_a_multiple():
    # sequence parallelism splits the width over tp ranks: extra response columns on the right
    from r1zero.engines.torch_engine import SeqBatch
    from r1zero.engines.megatron.engine import pack

    batch = SeqBatch([[5, 6, 7], [8, 9]], [[10, 11], [12]], 0, torch.device("cpu"))
    plain, = pack([batch], 0, 2, torch.device("cpu"))
    even, = pack([batch], 0, 2, torch.device("cpu"), multiple=4)
    assert plain["input_ids"].shape[1] == 5 and even["input_ids"].shape[1] == 8
    assert torch.equal(even["input_ids"][:, :5], plain["input_ids"])
    assert not even["input_ids"][:, 5:].any()
    assert even["attention_mask"][:, :, :5, 5:].all()          # no real query sees the padding
    assert (even["prompt_width"], even["response_width"]) == (3, 2)
