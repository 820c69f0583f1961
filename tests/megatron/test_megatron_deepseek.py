"""The megatron engine on a tiny DeepSeek-V3 (MLA, a dense first layer, MoE layers with 4
routed experts top-2 in 2 groups and a shared expert, a random router expert bias):

- HF -> mcore -> HF weights round-trip bit-exactly, at tp / expert-tp 1 and 2;
- the mcore model's logits equal the HF model's (default rope and yarn rope) at TP 1;
- one GRPO update at EP 2 (2 experts per rank), TP 2 (sequence parallel, each expert split over
  the tp ranks) and TP 2 with ``moe_tp_extend_ep`` (2 whole experts per tp rank) equals the HF
  model's update (AdamW): loss and gradients within 1e-5 relative, grad norm within 1e-5, the
  weight update within 1e-3; the exported rollout weights are the updated ones (and score like
  the actor in the rollout engine), the expert bias unchanged (frozen);
- expert settings a model cannot take are refused by key.
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("megatron.core", reason="megatron-core not installed: pip install '.[megatron]'")

from r1zero.host.errors import ConfigError  # noqa: E402
from r1zero.engines.megatron import model as M  # noqa: E402
from tests.megatron.test_megatron_engine import check_against, reference_update  # noqa: E402
from tests.megatron.workers import grpo_layouts, logits, spawn  # noqa: E402


def _hf_state(model_dir):
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    return hf.config, {k: v.detach() for k, v in hf.state_dict().items()}


@pytest.mark.parametrize("tp, etp", [(1, 1), (2, 2), (2, 1)])
def test_megatron_deepseek_weights_round_trip_exactly(tiny_deepseek, tp, etp):
    config, hf = _hf_state(tiny_deepseek)
    f = M.arch_facts(config)
    full = M.hf_to_mcore(f, hf, tp, etp)
    assert "decoder.layers.2.mlp.experts.local_experts.3.linear_fc1.weight" in full
    back = {}
    for i in range(f["layers"]):
        prefix = f"decoder.layers.{i}."
        layer = {k[len(prefix):]: v for k, v in full.items() if k.startswith(prefix)}
        back.update(M.mcore_to_hf_layer(f, layer, i, tp, etp))
    layers = {k for k in hf if k.startswith("model.layers.")}
    assert sorted(back) == sorted(layers)
    for k in layers:
        assert torch.equal(back[k], hf[k]), k


def test_megatron_deepseek_expert_fc1_rank_by_rank(tiny_deepseek):
    # expert-tp 2: each slice of expert 3's fc1 is [gate rows of the slice; up rows of the slice]
    config, hf = _hf_state(tiny_deepseek)
    fc1 = M.hf_to_mcore(M.arch_facts(config), hf, 2, 2)[
        "decoder.layers.1.mlp.experts.local_experts.3.linear_fc1.weight"]
    gate_up = hf["model.layers.1.mlp.experts.gate_up_proj"][3]     # [gate 32; up 32] x hidden
    assert torch.equal(fc1.chunk(2)[1], torch.cat([gate_up[16:32], gate_up[48:64]]))


def test_megatron_deepseek_logits_equal_hf(tiny_deepseek, tiny_deepseek_yarn, tmp_path):
    # one rank builds both models (default rope, yarn rope) at TP 1 next to their HF models
    spawn(logits, 1, [str(tiny_deepseek), str(tiny_deepseek_yarn)], str(tmp_path))
    for name, out in torch.load(tmp_path / "rank0.pt").items():
        diff = float((out["mcore"][..., :96] - out["hf"]).abs().max())
        print(f"megatron deepseek {name}: max abs logits diff {diff:.2e} "
              f"(logits up to {float(out['hf'].abs().max()):.2f})")
        assert diff < 1e-5


@pytest.fixture(scope="module")
def deepseek_reference(tiny_deepseek):
    return reference_update(tiny_deepseek)


LAYOUTS = {"ep2": ["actor.expert_parallel=2"], "tp2": ["actor.tensor_parallel=2"],
           "tp2_moe_tp_extend_ep": ["actor.tensor_parallel=2", "actor.moe_tp_extend_ep=true"]}


def test_megatron_deepseek_grpo_update_equals_hf(deepseek_reference, tiny_deepseek, tmp_path):
    # the three 2-rank layouts run one after the other in the same 2 processes
    spawn(grpo_layouts, 2, str(tiny_deepseek), str(tmp_path), LAYOUTS)
    norm = float(torch.cat([g.flatten() for g in deepseek_reference["grads"].values()]).norm())
    for name in LAYOUTS:
        ranks = [torch.load(tmp_path / name / f"rank{r}.pt") for r in range(2)]
        check_against(deepseek_reference, ranks, f"deepseek {name}",
                      frozen=("e_score_correction_bias",))
        print(f"megatron deepseek {name}: grad norm {ranks[0]['grad_norm']:.7f} vs {norm:.7f}")
        assert abs(ranks[0]["grad_norm"] - norm) / norm < 1e-5
        for r in ranks:     # the router's expert bias is not trained
            for k, v in r["after"].items():
                if k.endswith("e_score_correction_bias"):
                    assert torch.equal(v, deepseek_reference["before"][k]), k


def test_megatron_expert_settings_refused_by_key(tiny_llm, tiny_deepseek):
    from r1zero.config.load import load_config
    from r1zero.engines.megatron.moe import check_layout

    dense = M.arch_facts(_hf_state(tiny_llm)[0])
    moe = M.arch_facts(_hf_state(tiny_deepseek)[0])
    for key in ("actor.expert_parallel=2", "actor.moe_tp_extend_ep=true"):
        cfg = load_config(None, [key])
        with pytest.raises(ConfigError, match=rf"{key.split('=')[0]}: .* no routed experts"):
            check_layout(cfg.actor, dense, 2)
    with pytest.raises(ConfigError, match=r"4 routed experts do not split over 8 actor expert "
                                          r"ranks"):
        check_layout(load_config(None, ["actor.expert_parallel=8"]).actor, moe, 8)
    with pytest.raises(ConfigError, match=r"expert_parallel 2 does not divide data parallel 1"):
        check_layout(load_config(None, ["actor.expert_parallel=2",
                                        "actor.pipeline_parallel=2"]).actor, moe, 2)


def test_megatron_deepseek_refuses_what_megatron_computes_differently():
    from transformers import DeepseekV3Config

    with pytest.raises(ConfigError, match=r"model.path: DeepSeek-V3 norm_topk_prob false"):
        M.arch_facts(DeepseekV3Config(norm_topk_prob=False))
    with pytest.raises(ConfigError, match=r"group routing with num_experts_per_tok 6 and "
                                          r"topk_group 2"):
        M.arch_facts(DeepseekV3Config(num_experts_per_tok=6, n_group=4, topk_group=2))


def test_megatron_deepseek_convert_round_trips_across_layouts(tiny_deepseek, tmp_path):
    # HF -> mcore dist checkpoint at EP 2 (each rank saves its 2 experts), then mcore -> HF
    # safetensors at TP 2 with sequence parallelism (each rank loads every expert's half):
    # every tensor of the HF checkpoint comes back bit-identical under its checkpoint name
    from safetensors.torch import load_file

    from tests.megatron.workers import convert_there_and_back

    spawn(convert_there_and_back, 2, str(tiny_deepseek), str(tmp_path),
          ["actor.expert_parallel=2"], ["actor.tensor_parallel=2"])
    src = load_file(tiny_deepseek / "model.safetensors")
    back = load_file(tmp_path / "hf" / "model.safetensors")
    assert "model.layers.2.mlp.experts.3.up_proj.weight" in back
    assert sorted(back) == sorted(src)
    for k in src:
        assert torch.equal(back[k], src[k]), k


def test_megatron_deepseek_save_at_tp2_resume_at_pp2_and_not_at_ep2(tiny_deepseek, tmp_path):
    # TP 2 (sequence parallel, experts split by tp): update 1, save, update 2. PP 2 (stages of
    # 1 and 2 layers): load, update 2: the loaded weights are bit-identical and update 2
    # matches, so the Adam state moved across layouts too. At EP 2 megatron chains a second
    # optimizer for the experts: refused by name, not a KeyError deep in megatron.
    from tests.megatron.test_megatron_engine import rel
    from tests.megatron.workers import grpo_update, resume_layouts

    a = tmp_path / "tp2"
    a.mkdir()
    spawn(grpo_update, 2, str(tiny_deepseek), str(a), ["actor.tensor_parallel=2"], 2, 1, None)
    spawn(resume_layouts, 2, str(tiny_deepseek), str(tmp_path), str(a / "ckpt"), {
        "pp2": ["actor.pipeline_parallel=2", "actor.num_layer_list=[1,2]"],
        "ep2": ["actor.expert_parallel=2"]})
    ra, rb = torch.load(a / "rank0.pt"), torch.load(tmp_path / "pp2" / "rank0.pt")
    for k in ra["before"]:
        assert torch.equal(rb["before"][k], ra["before"][k]), k
    keys = sorted(ra["after"])
    flat = lambda r, w: torch.cat([r[w][k].flatten() for k in keys])   # noqa: E731
    update_rel = rel(flat(rb, "after") - flat(rb, "before"), flat(ra, "after") - flat(ra, "before"))
    print(f"megatron deepseek resume tp2 -> pp2: update 2 rel {update_rel:.2e}")
    assert update_rel < 1e-3
    for r in range(2):
        refused = torch.load(tmp_path / "ep2" / f"rank{r}.pt")["refused"]
        assert "saved at tp 2 x pp 1 x ep 1 as 1 optimizer(s), and this run at tp 1 x pp 1 x " \
               "ep 2 has 2" in refused, refused
