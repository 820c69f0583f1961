"""Routing replay (R3) in the megatron engine on the tiny DeepSeek-V3 (2 MoE layers, 4 routed
experts top-2 in 2 groups, a random expert bias):

the rollout is the HF model with its routers perturbed (other router logits, as another
kernel would give), sampled by the built-in sampler, which records each response token's
experts. The megatron actor (the unperturbed model) computes the responses' log-probs at
1 rank and at EP 2 (2 experts per rank), with ``algorithm.routing_replay`` on and off, and
with it on at TP 2 (sequence parallel) and PP 2 (one MoE layer per stage):

- on: its routers choose the rollout's experts for every fed response token and MoE layer;
  the router still gets a gradient (gate weights recomputed for the replayed experts);
- off: the choices differ somewhere, and ``rollout/mismatch_kl`` is larger than with replay.

Names carry "replay" for ``pytest -k "mismatch or replay"``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip("megatron.core", reason="megatron-core not installed: pip install '.[megatron]'")

from tests.megatron.workers import join, spawn

N_SAMPLES, LAYERS, TOP_K = 4, 2, 2


@pytest.fixture(scope="module")
def rollout(tiny_deepseek, tmp_path_factory):
    """The perturbed-router rollout's samples (prompts, responses, log-probs, routes), saved."""
    from r1zero.engines.routing import moe_routers
    from r1zero.engines.sampler import Sampler
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(tiny_deepseek), dtype=torch.float32).eval()
    torch.manual_seed(1)
    for r in moe_routers(model):
        r.weight.data.add_(0.1 * torch.randn_like(r.weight))
    prompts = [[5, 6, 7, 8, 9], [10, 11, 12]]
    out = Sampler(model, [], 0).generate(prompts, N_SAMPLES, 8, record_routes=True,
                                         generator=torch.Generator().manual_seed(2))
    path = tmp_path_factory.mktemp("replay") / "rollout.pt"
    torch.save({"prompts": [prompts[i] for i in out.prompt_index],
                "responses": out.response_ids, "logprobs": out.logprobs,
                "routes": out.routes}, path)
    return path


def replay_layouts(rank: int, world: int, port: int, model: str, sample: str, out_dir: str,
                   layouts: dict) -> None:
    """Per layout (name -> overrides), in the same processes: the actor's log-probs of this
    data-parallel rank's micro-batches of the rollout, the experts its routers chose for
    them, and (replay on) the router's gradient of sum(log-probs)."""
    join(rank, world, port)
    from megatron.core import parallel_state as ps
    from megatron.core.transformer.moe.router import TopKRouter
    from r1zero.config.load import load_config
    from r1zero.engines.megatron.engine import MegatronTrainEngine
    from r1zero.engines.routing import response_routes
    from r1zero.engines.torch_engine import SeqBatch

    from tests.megatron.workers import _Tok

    s = torch.load(sample)
    for name, overrides in layouts.items():
        cfg = load_config(None, [f"model.path={model}", "model.dtype=float32",
                                 "actor.engine=megatron", "actor.micro_batch_size=2",
                                 "algorithm.kl_coef=0", *overrides])
        eng = MegatronTrainEngine(cfg, _Tok())
        dp, dp_rank = ps.get_data_parallel_world_size(), ps.get_data_parallel_rank()
        mine = [list(range(i, i + 2)) for i in range(0, len(s["prompts"]), 2)][dp_rank::dp]
        batches = []
        for idx in mine:
            b = SeqBatch([s["prompts"][i] for i in idx], [s["responses"][i] for i in idx], 0,
                         torch.device("cpu"))
            b.routes = response_routes([s["routes"][i] for i in idx], b.response_ids.shape[1],
                                       LAYERS, TOP_K)
            batches.append(b)
        maps: list[torch.Tensor] = []
        named = [(n, m) for n, m in eng.model.named_modules() if isinstance(m, TopKRouter)]
        routers = [m for _, m in named]
        # this stage's MoE layers: global layer = stage offset + local number; layer 0 is dense
        layers = [eng.layer_offset() + int(n.split(".")[2]) - 1 for n, _ in named]
        hooks = [r.register_forward_hook(lambda mod, a, o, maps=maps: maps.append(o[1].detach()))
                 for r in routers]
        logp = eng.logprobs_of(batches, 1.0)
        for h in hooks:
            h.remove()
        if ps.get_tensor_model_parallel_world_size() > 1:   # sequence parallel: whole sequences
            maps = [_gather_seq(m, ps.get_tensor_model_parallel_group()) for m in maps]
        local = len(routers)
        # megatron's padded layout: pipelines pad every micro-batch to one shape
        common = (max(2, *(b.input_ids.shape[0] for b in batches)),
                  max(b.prompt_width for b in batches)) if cfg.actor.pipeline_parallel > 1 else None
        chosen = [_response_experts(maps[j * local:(j + 1) * local], b, common)
                  for j, b in enumerate(batches)]
        rollout_lp = []
        for idx, b in zip(mine, batches):
            lp = torch.zeros(b.response_mask.shape)
            for row, i in enumerate(idx):
                lp[row, :len(s["logprobs"][i])] = torch.tensor(s["logprobs"][i])
            rollout_lp.append(lp)
        result = {"logp": logp, "chosen": chosen, "rollout": rollout_lp, "layers": layers,
                  "routes": [b.routes for b in batches], "mask": [b.response_mask for b in batches]}
        if cfg.algorithm.routing_replay:
            eng.forward_backward(batches, 1.0, lambda i, lp, h, bs=batches: (
                (lp * bs[i].response_mask).sum(), {}))
            result["router_grad"] = [float(r.weight.main_grad.abs().sum()) for r in routers]
        (Path(out_dir) / name).mkdir(exist_ok=True)
        torch.save(result, Path(out_dir) / name / f"rank{rank}.pt")
    torch.distributed.destroy_process_group()


def _gather_seq(m: torch.Tensor, group) -> torch.Tensor:
    """A tensor-parallel rank's (its part of seq x rows, experts) routing map -> the whole."""
    parts = [torch.empty_like(m, dtype=torch.int32) for _ in range(group.size())]
    torch.distributed.all_gather(parts, m.to(torch.int32), group=group)
    return torch.cat(parts).bool()


def _response_experts(maps: list[torch.Tensor], b, common: tuple | None) -> torch.Tensor:
    """Per MoE layer of this stage, (seq x rows, experts) routing maps of one micro-batch
    (its own rows and prompt width, or the pipeline's ``common`` ones) -> (n, R, layers, k)
    sorted experts of its response tokens."""
    n, p, r = b.input_ids.shape[0], b.prompt_width, b.response_ids.shape[1]
    rows, p = common or (n, p)
    per_layer = []
    for m in maps:
        m = m.view(-1, rows, m.shape[-1]).transpose(0, 1)[:n, p:p + r]      # (n, R, E)
        per_layer.append(m.float().topk(TOP_K, dim=-1).indices.sort(-1).values)
    return torch.stack(per_layer, dim=2)


def _gather(out_dir: Path, name: str, world: int):
    from r1zero.algo.rollout_corr import add_sums, mismatch_metrics, mismatch_sums

    equal, differ, fed_tokens, sums, grads = True, 0, 0, {}, []
    for rank in range(world):
        res = torch.load(out_dir / name / f"rank{rank}.pt")
        grads += res.get("router_grad", [])
        logps = res["logp"] or [None] * len(res["chosen"])      # None off the last stage
        for chosen, routes, mask, logp, rollout_lp in zip(res["chosen"], res["routes"],
                                                          res["mask"], logps, res["rollout"]):
            fed = (routes >= 0).all(-1).all(-1)                     # (n, R) tokens fed with routes
            want = routes[:, :, res["layers"]].long().sort(-1).values
            same = (chosen == want).all(-1).all(-1)                 # every layer's experts equal
            equal &= bool(same[fed].all())
            differ += int((~same & fed).sum())
            fed_tokens += int(fed.sum())
            if logp is not None:
                sums = add_sums(sums, mismatch_sums(logp, rollout_lp, mask))
    return equal, differ, fed_tokens, mismatch_metrics(sums), grads


LAYOUTS = {1: {"1rank_on": ["algorithm.routing_replay=true"], "1rank_off": []},
           2: {"ep2_on": ["actor.expert_parallel=2", "algorithm.routing_replay=true"],
               "ep2_off": ["actor.expert_parallel=2"],
               "tp2_on": ["actor.tensor_parallel=2", "algorithm.routing_replay=true"],
               "pp2_on": ["actor.pipeline_parallel=2", "actor.num_layer_list=[2,1]",
                          "algorithm.routing_replay=true"]}}


@pytest.mark.parametrize("world", [1, 2], ids=["1rank", "ep2"])
def test_megatron_replay_actor_routes_as_the_rollout(tiny_deepseek, rollout, world):
    out = rollout.parent / f"w{world}"
    out.mkdir(exist_ok=True)
    spawn(replay_layouts, world, str(tiny_deepseek), str(rollout), str(out), LAYOUTS[world])
    on_name, off_name = list(LAYOUTS[world])[:2]
    eq_on, diff_on, fed, m_on, grads = _gather(out, on_name, world)
    eq_off, diff_off, _, m_off, _ = _gather(out, off_name, world)
    print(f"megatron replay {on_name.split('_')[0]}: {fed} fed response tokens; routed "
          f"differently in some layer: replay on {diff_on}, off {diff_off}; mismatch_kl on "
          f"{m_on['rollout/mismatch_kl']:.3e} off {m_off['rollout/mismatch_kl']:.3e}; "
          f"logprob_diff_mean on {m_on['rollout/logprob_diff_mean']:.3e} "
          f"off {m_off['rollout/logprob_diff_mean']:.3e}")
    assert fed > 0 and eq_on and diff_on == 0
    assert diff_off > 0 and not eq_off
    assert m_off["rollout/mismatch_kl"] > m_on["rollout/mismatch_kl"]
    # the replayed gate weights are the router's own scores: every router has a gradient
    assert grads and all(g > 0 for g in grads)
    if world == 2:
        # TP 2 with sequence parallelism: each tp rank replays its half of the sequence; both
        # ranks see every micro-batch (dp 1), so count rank 0's only
        eq_tp, diff_tp, fed_tp, m_tp, _ = _gather(out, "tp2_on", 1)
        print(f"megatron replay tp2 (sequence parallel): routed differently {diff_tp} of "
              f"{fed_tp}; mismatch_kl {m_tp['rollout/mismatch_kl']:.3e}")
        assert eq_tp and fed_tp == fed
        assert abs(m_tp["rollout/mismatch_kl"] - m_on["rollout/mismatch_kl"]) < 1e-6
        # PP 2, stages [dense + MoE 1 | MoE 2]: each stage replays its own MoE layers' routes
        eq_pp, diff_pp, fed_pp, m_pp, grads_pp = _gather(out, "pp2_on", 2)
        print(f"megatron replay pp2: routed differently {diff_pp}; mismatch_kl "
              f"{m_pp['rollout/mismatch_kl']:.3e}")
        assert eq_pp and fed_pp == 2 * fed and len(grads_pp) == 2 and min(grads_pp) > 0
        assert abs(m_pp["rollout/mismatch_kl"] - m_on["rollout/mismatch_kl"]) < 1e-6


def test_megatron_replay_takes_the_recorded_experts_where_there_are_some():
    from r1zero.engines.megatron.replay import Replay, lay_out

    scores = torch.tensor([[0.9, 0.1, 0.5, 0.3], [0.2, 0.8, 0.1, 0.7]])
    own = lambda s, k, g=None, t=None: torch.topk(s, k, dim=1)
    r = Replay()
    assert torch.equal(r.get_replay_topk(scores, 2, None, None, own)[1], own(scores, 2)[1])
    r.plan = torch.tensor([[3, 1], [-1, -1]])       # token 0 replayed, token 1 free
    values, idx = r.get_replay_topk(scores, 2, None, None, own)
    assert idx.tolist() == [[3, 1], [1, 3]]
    assert torch.equal(values, torch.tensor([[0.3, 0.1], [0.8, 0.7]]))   # scores there
    # (1 row, 2 response tokens) routes on a 2-row micro-batch with prompt width 3, width 6
    laid = lay_out(torch.tensor([[[[0, 1]], [[2, 3]]]], dtype=torch.int16), 2, 3, 6)
    assert laid.shape == (2, 6, 1, 2) and (laid[1] == -1).all() and (laid[0, :3] == -1).all()
    assert laid[0, 3:5, 0].tolist() == [[0, 1], [2, 3]] and (laid[0, 5] == -1).all()


def test_megatron_replay_refused_by_name(tiny_llm, tiny_deepseek):
    from r1zero.config.load import load_config
    from r1zero.engines.megatron import model as M
    from r1zero.engines.megatron.replay import check
    from r1zero.host.errors import ConfigError
    from transformers import AutoConfig

    dense = M.arch_facts(AutoConfig.from_pretrained(str(tiny_llm)))
    moe = M.arch_facts(AutoConfig.from_pretrained(str(tiny_deepseek)))
    on = ["algorithm.routing_replay=true"]
    assert check(load_config(None, on), moe) is True
    assert check(load_config(None, []), dense) is False
    for facts, extra, match in (
            (dense, [], "no routed experts"),
            (moe, ["actor.use_remove_padding=true"], "padded rows"),
            (moe, ["actor.recompute=full", "actor.pipeline_parallel=2"], "1F1B")):
        with pytest.raises(ConfigError, match=rf"algorithm.routing_replay: .*{match}"):
            check(load_config(None, on + extra), facts)
