"""Worker processes of the megatron tests: each applies the CPU redirections first, joins a
gloo group, and writes what it computed to ``out_dir/rank{r}.pt``."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import torch


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(fn, world: int, *args) -> None:
    import torch.multiprocessing as mp

    mp.spawn(fn, args=(world, free_port(), *args), nprocs=world, join=True)


def join(rank: int, world: int, port: int) -> None:
    from tests.megatron import cpu_redirect

    torch.set_num_threads(1)
    cpu_redirect.apply()
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)


class _Tok:
    pad_token_id = 0


def grpo_batches(seed: int = 0, packed: bool = False):
    """2 prompts x 2 samples of random tokens, micro-batches of 2 (``packed``: each one row,
    ``actor.use_remove_padding``), fixed advantages."""
    from r1zero.engines.packing import PackedBatch
    from r1zero.engines.torch_engine import SeqBatch

    g = torch.Generator().manual_seed(seed)
    tok = lambda n: torch.randint(3, 90, (n,), generator=g).tolist()   # noqa: E731
    prompts = [tok(5), tok(5), tok(3), tok(3)]
    responses = [tok(4), tok(2), tok(6), tok(3)]
    batches = [(PackedBatch if packed else SeqBatch)(prompts[i:i + 2], responses[i:i + 2], 0, torch.device("cpu"))
               for i in (0, 2)]
    return batches, torch.tensor([1.0, -1.0, 0.5, -0.5])


def grpo_update(rank: int, world: int, port: int, model: str, out_dir: str, overrides: list,
                steps: int = 1, save_after: int | None = None, load_from: str | None = None) -> None:
    """``steps`` GRPO updates (the registered objective, KL to the reference) on
    ``grpo_batches``; optionally saving the engine state after update ``save_after`` (to
    ``out_dir/ckpt``) or starting from a saved state."""
    join(rank, world, port)
    from r1zero.config.load import load_config
    from r1zero.engines.megatron.engine import MegatronTrainEngine

    cfg = load_config(None, [f"model.path={model}", "model.dtype=float32", "actor.engine=megatron",
                             "actor.micro_batch_size=2", "actor.lr=1e-2", "algorithm.kl_coef=0.1",
                             *overrides])
    eng = MegatronTrainEngine(cfg, _Tok())
    if load_from:
        eng.load_state(load_from)
    result = {}
    for step in range(1, steps + 1):
        result = _one_update(eng, cfg)
        if step == save_after:
            eng.save_state(str(Path(out_dir) / "ckpt"))
    torch.save(result, Path(out_dir) / f"rank{rank}.pt")
    torch.distributed.destroy_process_group()


def grpo_layouts(rank: int, world: int, port: int, model: str, out_dir: str,
                 layouts: dict) -> None:
    """One GRPO update per layout (name -> overrides) in the same processes, one after the
    other (``parallel_state`` rebuilt each time), to ``out_dir/name/rank{r}.pt``."""
    join(rank, world, port)
    from r1zero.config.load import load_config
    from r1zero.engines.megatron.engine import MegatronTrainEngine

    for name, overrides in layouts.items():
        cfg = load_config(None, [f"model.path={model}", "model.dtype=float32",
                                 "actor.engine=megatron", "actor.micro_batch_size=2",
                                 "actor.lr=1e-2", "algorithm.kl_coef=0.1", *overrides])
        result = _one_update(MegatronTrainEngine(cfg, _Tok()), cfg)
        (Path(out_dir) / name).mkdir(exist_ok=True)
        torch.save(result, Path(out_dir) / name / f"rank{rank}.pt")
    torch.distributed.destroy_process_group()


def _one_update(eng, cfg) -> dict:
    from megatron.core import parallel_state as ps

    from r1zero.algo.loss import objective

    batches, adv = grpo_batches(packed=cfg.actor.use_remove_padding)
    total = sum(b.response_mask.sum().item() for b in batches)   # the global token count
    dp, dp_rank = ps.get_data_parallel_world_size(), ps.get_data_parallel_rank()
    mine = list(range(dp_rank, len(batches), dp))                  # this dp rank's micro-batches
    batches = [batches[i] for i in mine]
    padded = [grpo_batches()[0][i] for i in mine]
    ref = eng.logprobs_of(batches, 1.0, reference=True)

    def loss_fn(i, logp, ent):
        b, j = batches[i], mine[i]
        out = objective(logp, logp.detach(), adv[2 * j:2 * j + 2], b.response_mask, ref[i],
                        ent, kl_coef=0.1)
        share = b.response_mask.sum().item() / total
        return out["loss"] * share, {"loss": float(out["loss"].detach()) * share}

    stats = eng.forward_backward(batches, 1.0, loss_fn)
    loss = torch.tensor(sum(s["loss"] for s in stats) if stats else 0.0, dtype=torch.float64)
    torch.distributed.all_reduce(loss, group=ps.get_data_parallel_group())
    result = {"loss": float(loss) if stats else None}
    if not cfg.actor.distributed_optimizer:
        result["grads"] = dict(eng.full_grads())
    result["before"] = dict(eng.full_weights())
    result["grad_norm"] = eng.step(1e4)
    result["after"] = dict(eng.full_weights())
    result.update(_rollout_vs_actor(eng, cfg, batches, padded))
    return result


def _rollout_vs_actor(eng, cfg, batches, padded) -> dict:
    """Log-probs of ``batches`` under the updated actor (megatron, last stage) and under the
    rollout engine's model after its weight sync (the built-in sampler's HF model)."""
    from r1zero.engines.rollout import SamplerRolloutEngine
    from r1zero.engines.torch_engine import response_logits, token_logprobs

    rollout = SamplerRolloutEngine(cfg, eng, _Tok(), [[1]])      # syncs from full_weights()
    actor = eng.logprobs_of(batches, 1.0)
    with torch.no_grad():
        hf = [token_logprobs(response_logits(rollout.model, b), b, 1.0, False)[0] for b in padded]
    from megatron.core import parallel_state as ps

    return {"actor_logp": actor, "rollout_logp": hf, "dp": ps.get_data_parallel_world_size(),
            "dp_rank": ps.get_data_parallel_rank()}


def convert_there_and_back(rank: int, world: int, port: int, hf: str, out_dir: str,
                           there: list, back: list) -> None:
    """HF -> mcore (``out_dir/mc``) at the layout ``there``, then mcore -> HF (``out_dir/hf``)
    at the layout ``back``, in the same processes."""
    join(rank, world, port)
    from r1zero.config.load import load_config
    from r1zero.engines.megatron import convert as C

    C.hf_to_mcore(load_config(None, ["model.dtype=float32", *there]), hf, f"{out_dir}/mc")
    C.mcore_to_hf(load_config(None, ["model.dtype=float32", *back]), f"{out_dir}/mc",
                  f"{out_dir}/hf")
    torch.distributed.destroy_process_group()



def bf16_update(rank: int, world: int, port: int, model: str, out_dir: str) -> None:
    """One update in bfloat16 at lr 1e-6: the bf16 model weights, the optimizer's fp32 master
    weights before and after, and the loss."""
    join(rank, world, port)
    from r1zero.config.load import load_config
    from r1zero.engines.megatron.engine import MegatronTrainEngine

    cfg = load_config(None, [f"model.path={model}", "model.dtype=bfloat16", "actor.engine=megatron",
                             "actor.micro_batch_size=2", "actor.lr=1e-6", "algorithm.kl_coef=0.1"])
    eng = MegatronTrainEngine(cfg, _Tok())
    subs = getattr(eng.optimizer, "chained_optimizers", [eng.optimizer])
    masters = lambda: [p.detach().clone() for o in subs for g in o.fp32_from_float16_groups  # noqa: E731
                       for p in g]
    models = lambda: [p.detach().clone() for o in subs for g in o.float16_groups for p in g]  # noqa: E731
    before, model_before = masters(), models()
    out = _one_update(eng, cfg)
    torch.save({"master_before": before, "master_after": masters(), "model_before": model_before,
                "model_after": models(), "loss": out["loss"]}, Path(out_dir) / f"rank{rank}.pt")
    torch.distributed.destroy_process_group()


def logits(rank: int, world: int, port: int, models: list, out_dir: str) -> None:
    """Each model's mcore logits at TP 1 next to its HF model's, on 2 rows of random tokens."""
    join(rank, world, port)
    from r1zero.engines.megatron.engine import init_parallel

    init_parallel(1, 1, 0)
    out = {Path(m).name: _logits(m) for m in models}
    torch.save(out, Path(out_dir) / f"rank{rank}.pt")
    torch.distributed.destroy_process_group()


def _logits(model: str) -> dict:
    from transformers import AutoModelForCausalLM

    from r1zero.engines.megatron import model as M
    from r1zero.engines.megatron.engine import load_shard

    hf = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32).eval()
    f = M.arch_facts(hf.config)
    gpt = M.build_gpt(f, M.transformer_config(f, tp=1, pp=1, dtype=torch.float32), tp=1)
    load_shard(gpt, M.hf_to_mcore(f, {k: v.detach() for k, v in hf.state_dict().items()}, 1), 0)
    ids = torch.randint(0, f["vocab"], (2, 12), generator=torch.Generator().manual_seed(0))
    causal = torch.ones(12, 12, dtype=torch.bool).triu(1)[None, None].expand(2, 1, 12, 12)
    with torch.no_grad():
        return {"hf": hf(ids).logits,
                "mcore": gpt.eval()(ids, torch.arange(12).expand(2, 12), causal)}


def resume_layouts(rank: int, world: int, port: int, model: str, out_dir: str, ckpt: str,
                   layouts: dict) -> None:
    """Per layout (name -> overrides), in the same processes: load the engine state ``ckpt``
    and run one update (``out_dir/name/rank{r}.pt``), or record the ``CheckpointError`` that
    refused the load (``{"refused": message}``)."""
    join(rank, world, port)
    from r1zero.config.load import load_config
    from r1zero.host.errors import CheckpointError
    from r1zero.engines.megatron.engine import MegatronTrainEngine

    for name, overrides in layouts.items():
        cfg = load_config(None, [f"model.path={model}", "model.dtype=float32",
                                 "actor.engine=megatron", "actor.micro_batch_size=2",
                                 "actor.lr=1e-2", "algorithm.kl_coef=0.1", *overrides])
        eng = MegatronTrainEngine(cfg, _Tok())
        try:
            eng.load_state(ckpt)
            result = _one_update(eng, cfg)
        except CheckpointError as exc:
            result = {"refused": str(exc)}
        (Path(out_dir) / name).mkdir(exist_ok=True)
        torch.save(result, Path(out_dir) / name / f"rank{rank}.pt")
    torch.distributed.destroy_process_group()
