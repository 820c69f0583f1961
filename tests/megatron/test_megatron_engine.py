"""The megatron engine on CPU ranks (gloo) equals the unsharded update: one GRPO update of a
tiny Qwen2 at TP 1, and at TP 2, PP 2 (stages of 1 and 3 layers) and DP 2 with the distributed
optimizer (the three in the same 2 processes), PP 4 with uneven middle stages on 4 ranks, each
against the same update computed by the HF model with torch AdamW in this process. Loss and
gradients within 1e-5 relative (norm-wise), the weight update within 1e-3; the weights
exported after the update are equal on every rank, and the rollout engine's model synced from
them gives the sharded actor's log-probs (within 1e-5). Checkpoint resharding is tested on the
tiny DeepSeek-V3 (``test_megatron_deepseek``) and through ``r1zero train``.

Each case spawns its ranks (``tests.megatron.workers``), which apply the CPU redirections.
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("megatron.core", reason="megatron-core not installed: pip install '.[megatron]'")

from tests.megatron.workers import grpo_batches, grpo_update, spawn  # noqa: E402


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp(min=1e-12))


def reference_update(model_dir):
    """The same update with the HF model: loss, grads, weights before/after (AdamW, lr 1e-2)."""
    from transformers import AutoModelForCausalLM

    from r1zero.algo.loss import objective
    from r1zero.engines.torch_engine import response_logits

    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, betas=(0.9, 0.95), eps=1e-8,
                            weight_decay=0.0)
    batches, adv = grpo_batches()
    total = sum(b.response_mask.sum().item() for b in batches)
    loss_sum = 0.0
    for i, b in enumerate(batches):
        logits = response_logits(model, b).float()
        logz = torch.logsumexp(logits, -1)
        logp = logits.gather(-1, b.response_ids.unsqueeze(-1)).squeeze(-1) - logz
        ent = logz - (torch.softmax(logits, -1) * logits).sum(-1)
        out = objective(logp, logp.detach(), adv[2 * i:2 * i + 2], b.response_mask,
                        logp.detach(), ent, kl_coef=0.1)
        share = b.response_mask.sum().item() / total
        (out["loss"] * share).backward()
        loss_sum += float(out["loss"].detach()) * share
    grads = {k: p.grad.detach().clone() for k, p in model.named_parameters()}
    opt.step()
    return {"loss": loss_sum, "grads": grads, "before": before, "after": model.state_dict()}


@pytest.fixture(scope="module")
def reference(tiny_llm):
    return reference_update(tiny_llm)


def run_layout(tmp_path, model_dir, world, overrides):
    spawn(grpo_update, world, str(model_dir), str(tmp_path), overrides)
    return [torch.load(tmp_path / f"rank{r}.pt") for r in range(world)]


def check_against(reference, ranks, name, frozen=()):
    loss = next(r["loss"] for r in ranks if r["loss"] is not None)
    loss_rel = abs(loss - reference["loss"]) / abs(reference["loss"])
    worst_grad = max((rel(r["grads"][k], reference["grads"][k]) for r in ranks if "grads" in r
                      for k in r["grads"]), default=None)
    per_tensor = {k: rel(r["after"][k] - r["before"][k],
                         reference["after"][k] - reference["before"][k])
                  for r in ranks for k in r["after"]}
    keys = sorted(ranks[0]["after"])
    worst_update = max(rel(torch.cat([(r["after"][k] - r["before"][k]).flatten() for k in keys]),
                           torch.cat([(reference["after"][k] - reference["before"][k]).flatten()
                                      for k in keys])) for r in ranks)
    print(f"megatron {name}: worst tensor update {max(per_tensor.items(), key=lambda kv: kv[1])}")
    print(f"megatron {name}: loss rel {loss_rel:.2e}, grads rel {worst_grad}, "
          f"update rel {worst_update:.2e}")
    assert loss_rel < 1e-5
    if worst_grad is not None:
        assert worst_grad < 1e-5
    assert worst_update < 1e-3
    for r in ranks:   # every rank exports the same full weights, and they are the updated ones
        for k, v in r["after"].items():
            assert torch.equal(v, ranks[0]["after"][k]), k
            if not k.endswith(frozen):   # buffers the update leaves alone
                assert not torch.equal(v, r["before"][k]), k
    # the rollout engine's model, synced after the update, scores like the sharded actor
    last = [r for r in ranks if r["actor_logp"] is not None]
    assert last
    batches, _ = grpo_batches()
    for r in last:                  # a dp rank holds every dp-th micro-batch
        mine = batches[r["dp_rank"]::r["dp"]]
        for actor, hf, b in zip(r["actor_logp"], r["rollout_logp"], mine, strict=True):
            assert ((actor - hf) * b.response_mask).abs().max() < 1e-5


def test_megatron_grpo_update_at_tp1_equals_unsharded(reference, tiny_llm, tmp_path):
    check_against(reference, run_layout(tmp_path, tiny_llm, 1, []), "tp1")


LAYOUTS = {"tp2": ["actor.tensor_parallel=2"],
           "pp2": ["actor.pipeline_parallel=2", "actor.num_layer_list=[1,3]"],   # uneven stages
           "dp2_distributed_optimizer": ["actor.distributed_optimizer=true"],
           # use_remove_padding: each micro-batch one row, block-diagonal causal mask
           "packed_tp2": ["actor.tensor_parallel=2", "actor.use_remove_padding=true",
                          "actor.swap_optimizer=true"],
           "packed_pp2": ["actor.pipeline_parallel=2", "actor.num_layer_list=[1,3]",
                          "actor.use_remove_padding=true"]}


def test_megatron_grpo_update_at_two_ranks_equals_unsharded(reference, tiny_llm, tmp_path):
    # the three 2-rank layouts run one after the other in the same 2 processes
    from tests.megatron.workers import grpo_layouts

    spawn(grpo_layouts, 2, str(tiny_llm), str(tmp_path), LAYOUTS)
    for name in LAYOUTS:
        check_against(reference, [torch.load(tmp_path / name / f"rank{r}.pt") for r in range(2)],
                      name)


def test_megatron_convert_round_trips_across_layouts(tiny_llm, tmp_path):
    # HF -> mcore dist checkpoint at TP 2, then mcore -> HF safetensors at PP 2 (in the same
    # 2 processes): every tensor comes back bit-identical, under the same names
    from safetensors.torch import load_file

    from tests.megatron.workers import convert_there_and_back

    spawn(convert_there_and_back, 2, str(tiny_llm), str(tmp_path), ["actor.tensor_parallel=2"],
          ["actor.pipeline_parallel=2"])
    src, back = load_file(tiny_llm / "model.safetensors"), load_file(tmp_path / "hf" / "model.safetensors")
    assert sorted(back) == sorted(src)
    for k in src:
        assert torch.equal(back[k], src[k]), k


@pytest.fixture(scope="module")
def tiny_llm5(tmp_path_factory):
    """A 5-layer tiny Qwen2, untied: room for pipeline stages of 1, 1, 2 and 1 layers."""
    from tests.megatron.conftest import save_tiny_llm

    return save_tiny_llm(tmp_path_factory.mktemp("tiny_llm5"), layers=5, tied=False, seed=1)


def test_megatron_pp4_uneven_middle_stages_equal_unsharded(tiny_llm5, tmp_path):
    # stages of 1, 1, 2, 1 layers: uneven middle stages, as the 671B recipe's 9,10,10,10,11,11
    # (megatron-core's pipeline_model_parallel_layout); 4 ranks, 1F1B over 2 micro-batches
    ranks = run_layout(tmp_path, tiny_llm5, 4, ["actor.pipeline_parallel=4",
                                                "actor.num_layer_list=[1,1,2,1]"])
    check_against(reference_update(tiny_llm5), ranks, "pp4 [1,1,2,1]")


def test_megatron_bf16_keeps_fp32_master_weights(tiny_llm, tmp_path):
    # bf16 weights and compute, fp32 master weights in the optimizer: at lr 1e-6 an Adam step
    # moves each weight by ~1e-6, far below bf16's resolution at these magnitudes (~4e-3 near
    # 1), so the bf16 weights barely move while the fp32 masters take the whole step
    from tests.megatron.workers import bf16_update

    spawn(bf16_update, 1, str(tiny_llm), str(tmp_path))
    r = torch.load(tmp_path / "rank0.pt")
    assert all(p.dtype == torch.bfloat16 for p in r["model_after"])
    assert all(p.dtype == torch.float32 for p in r["master_after"])
    step = torch.cat([(a - b).flatten() for a, b in zip(r["master_after"], r["master_before"])])
    moved = float((step != 0).float().mean())
    bf16_moved = float(torch.cat([(a != b).flatten() for a, b in
                                  zip(r["model_after"], r["model_before"])]).float().mean())
    print(f"megatron bf16: loss {r['loss']:.5f}; master step max {step.abs().max():.2e}, "
          f"{moved:.1%} of master weights moved, {bf16_moved:.1%} of bf16 weights changed")
    assert r["loss"] == r["loss"]
    assert 0.5e-6 < float(step.abs().max()) < 2e-6 and moved > 0.5
    assert bf16_moved < 0.05
    for m, w in zip(r["master_after"], r["model_after"]):   # the model holds the rounded masters
        assert torch.equal(m.to(torch.bfloat16), w)
