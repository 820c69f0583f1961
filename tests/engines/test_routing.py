"""MoE routing replay (R3) on a tiny random Qwen2-MoE: the sampler records each response
token's experts, and the actor's routers reuse them -- its choices then equal the rollout's
for every token and layer, even with a perturbed rollout router; without replay they differ
and the train/rollout log-prob mismatch is larger. Names carry "replay" for
``pytest -k "mismatch or replay"``."""

from __future__ import annotations

import copy

import pytest
import torch

from r1zero.algo.rollout_corr import mismatch_metrics, mismatch_sums
from r1zero.engines.routing import (RouteRecorder, gate_weights, moe_routers, replay,
                                    replay_plans, response_routes)
from r1zero.engines.sampler import Sampler
from r1zero.engines.torch_engine import SeqBatch, response_logits, token_logprobs


@pytest.fixture(scope="module")
def moe():
    """(actor, rollout copy with its routers perturbed, sampled output with routes)."""
    from transformers import Qwen2MoeConfig, Qwen2MoeForCausalLM

    torch.manual_seed(0)
    cfg = Qwen2MoeConfig(vocab_size=64, hidden_size=32, intermediate_size=64,
                         moe_intermediate_size=16, shared_expert_intermediate_size=32,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         num_experts=8, num_experts_per_tok=2, norm_topk_prob=False,
                         max_position_embeddings=64, pad_token_id=0)
    actor = Qwen2MoeForCausalLM(cfg).eval()
    for r in moe_routers(actor):        # random routers (HF initialises them to zero)
        r.weight.data.normal_(0, 0.5)
    rollout = copy.deepcopy(actor)
    for r in moe_routers(rollout):      # the rollout's kernels, exaggerated: other router logits
        r.weight.data.add_(torch.randn_like(r.weight) * 0.15)
    prompts = [[5, 6, 7, 8], [9, 10, 11]]
    out = Sampler(rollout, [], 0).generate(prompts, 3, 10, generator=torch.Generator().manual_seed(1),
                                           record_routes=True)
    return actor, rollout, prompts, out


def _actor_pass(actor, prompts, out, replay_on: bool):
    """The actor's log-probs of the responses and its experts of the response tokens."""
    batch = SeqBatch([prompts[i] for i in out.prompt_index], out.response_ids, 0, torch.device("cpu"))
    batch.routes = response_routes(out.routes, batch.response_ids.shape[1], 2, 2)
    plans = replay_plans(batch, True) if replay_on else []
    with replay(actor, plans), RouteRecorder(actor) as rec:
        logits = response_logits(actor, batch)
        chosen = rec.take().view(*batch.routes.shape)      # the response forward's choices
    logp, _ = token_logprobs(logits, batch, 1.0, False)
    return batch, logp, chosen


def test_replay_sampler_records_routes(moe):
    _, _, _, out = moe
    assert len(out.routes) == 6
    for ids, r in zip(out.response_ids, out.routes):
        assert r.shape == (len(ids), 2, 2) and r.dtype == torch.int16
        assert (r[:-1] >= 0).all() and (r[:-1] < 8).all()     # every fed token has 2 experts
        assert (r[-1] == -1).all()                              # the last token is never fed


def test_replay_actor_reuses_the_rollouts_experts(moe):
    actor, _, prompts, out = moe
    on = _actor_pass(actor, prompts, out, True)
    off = _actor_pass(actor, prompts, out, False)
    fed = on[0].routes >= 0
    # replay on: every response token's experts in every layer are the rollout's
    assert torch.equal(on[2][fed], on[0].routes[fed])
    # replay off: the perturbed routers chose otherwise somewhere
    differs = (off[2].sort(-1).values != on[0].routes.sort(-1).values).any(-1) & fed.all(-1)
    assert differs.any()
    mask = on[0].response_mask
    rollout_lp = torch.zeros_like(mask)
    for i, lp in enumerate(out.logprobs):
        rollout_lp[i, :len(lp)] = torch.tensor(lp)
    m_on = mismatch_metrics(mismatch_sums(on[1], rollout_lp, mask))
    m_off = mismatch_metrics(mismatch_sums(off[1], rollout_lp, mask))
    print(f"MoE mismatch: replay on {m_on}, off {m_off}, tokens routed differently in some "
          f"layer {differs.any(-1).float().mean().item():.2f} of rows x tokens")
    assert m_off["rollout/logprob_diff_mean"] > m_on["rollout/logprob_diff_mean"]


def test_replay_gate_weights_recomputed_with_gradients(moe):
    actor, _, prompts, out = moe
    actor.zero_grad()
    batch, logp, _ = _actor_pass(actor, prompts, out, True)
    (logp * batch.response_mask).sum().backward()
    assert all(r.weight.grad is not None and r.weight.grad.abs().sum() > 0
               for r in moe_routers(actor))
    # softmax router, no renormalisation: the weights are softmax(logits) at the chosen experts
    router = moe_routers(actor)[0]
    logits = torch.tensor([[0.0, 0.0, 1.0, 2.0, 0, 0, 0, 0]])
    w = gate_weights(router, logits, torch.tensor([[2, 0]]))
    z = 6 + torch.e + torch.e ** 2      # six e^0, e^1, e^2
    assert torch.allclose(w, torch.tensor([[torch.e / z, 1 / z]]))
