"""Data-parallel GRPO on a real local Ray (2 CPU workers, gloo, the FSDP2 engine): the split
update equals the one-process update, a 2-rank run equals a 1-rank run step by step, and its
checkpoints resume at the other world size (2 -> 1, 1 -> 2)."""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import pytest
import torch

from r1zero.config.load import load_config
from r1zero.trainer.dist import (merge_records, shard_prompts,
                                 unshard_prompts)
from r1zero.trainer.metrics import read_metrics
from tests.trainer.conftest import recipe, write_recipe

ray = pytest.importorskip("ray")


def test_shard_prompts_takes_each_ranks_piece_of_every_mini_batch():
    ids = list(range(8))
    assert shard_prompts(ids, 4, 0, 2) == [0, 1, 4, 5]
    assert shard_prompts(ids, 4, 1, 2) == [2, 3, 6, 7]
    assert shard_prompts(ids, 8, 1, 2) == [4, 5, 6, 7]          # one mini-batch: contiguous half
    assert sorted(sum((shard_prompts(ids, 4, r, 4) for r in range(4)), [])) == ids
    assert unshard_prompts([shard_prompts(ids, 4, r, 2) for r in (0, 1)], 4) == ids


def test_rollout_instances_take_contiguous_slices_and_refuse_an_uneven_world():
    from r1zero.host.errors import ConfigError
    from r1zero.trainer.dist import DataParallel, instance_slice

    assert [instance_slice(5, k, 2) for k in (0, 1)] == [(0, 2), (2, 5)]
    assert [instance_slice(4, k, 1) for k in (0,)] == [(0, 4)]
    assert [instance_slice(1, k, 2) for k in (0, 1)] == [(0, 0), (0, 1)]   # one idle instance
    four = [DataParallel(r, 4) for r in range(4)]
    for d in four:
        d.lay_out_instances(2, 1)
    assert [d.generates for d in four] == [True, False, True, False]
    with pytest.raises(ConfigError, match="tensor_parallel 3 x pipeline_parallel 1 = 3 does not "
                                          "divide the 4 devices"):
        four[0].lay_out_instances(3, 1)


def test_merge_records_concatenates_in_rank_order_and_adds_counts():
    a = {"ids": ["p0"], "rewards": [1.0, 0.0], "components": {"x/format": [1.0, 1.0]},
         "counts": {"reward/errors": 1}}
    b = {"ids": ["p1"], "rewards": [0.5, 0.5], "components": {"x/format": [0.0, 1.0]},
         "counts": {"reward/errors": 2}}
    assert merge_records([a, b]) == {
        "ids": ["p0", "p1"], "rewards": [1.0, 0.0, 0.5, 0.5],
        "components": {"x/format": [1.0, 1.0, 0.0, 1.0]}, "counts": {"reward/errors": 3}}


# 4 prompts x 2 samples a step, 2 mini-batches x 2 ppo epochs (old log-probs), micro-batches
# of 3 that straddle prompts, KL to the reference, clipping at 0.05 after the all-reduce
SECTIONS = dict(rollout={"n_samples_per_prompt": 2},
                # a reward that differs between samples of the random model: nonzero advantages
                rewards={"text_length": {"weight": 1.0}},
                plugins={"modules": [str(Path(__file__).with_name("length_reward.py"))]},
                actor={"global_batch_size": 4, "mini_batch_size": 2, "micro_batch_size": 3,
                       "ppo_epochs": 2, "clip_grad": 0.05, "lr": 1e-3, "train_iters": 3},
                algorithm={"kl_coef": 0.01}, checkpoint={"keep_last": 3})


def _dp_recipe(setup, run_dir, **sections) -> dict:
    sections["backend"] = {"devices_per_node": 2, "num_threads": 1, **sections.get("backend", {})}
    sections["ray"] = {"enabled": True}
    return recipe(setup, run_dir, **sections)


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, address="local", include_dashboard=False, logging_level="WARNING")
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def dp_group(tiny_setup, tmp_path_factory, local_ray):
    """Two Ray workers (ranks 0, 1) of one recipe; starting them is most of this file's time."""
    from r1zero.data.pipeline import from_config, prepare
    from r1zero.trainer.ray_runner import WorkerGroup

    run_dir = tmp_path_factory.mktemp("dp_run")
    cfg = load_config(None, base=_dp_recipe(tiny_setup, run_dir, **SECTIONS))
    resolved = from_config(cfg)
    prepare(resolved)
    group = WorkerGroup(cfg, resolved.backend)
    try:
        yield cfg, run_dir, group
    finally:
        group.close()


def _one_update(trainer, seqs, adv):
    """Runs inside a Ray worker (pickled by value: the tests package is not importable there)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    eng = trainer.engine
    before = {k: v.clone() for k, v in eng.full_weights()}
    schedule = eng.scheduler.state_dict()
    stats = trainer.update(seqs, adv)
    weights = {k: v.clone() for k, v in eng.full_weights()}
    trainer.rollout.sync_weights()      # what train_step does after the update
    roll = trainer.rollout.model
    same = roll is not eng.model and all(
        torch.equal(roll.state_dict()[k], weights[k]) for k in weights)
    # back to the initial state, for the run of the next test
    set_model_state_dict(eng.model, before, options=StateDictOptions(full_state_dict=True))
    eng.optimizer.state.clear()
    eng.scheduler.load_state_dict(schedule)
    trainer.rollout.sync_weights()
    return stats, weights, same, type(eng).__name__


def test_sharded_update_split_over_two_ranks_equals_the_one_process_update(tiny_setup, tmp_path,
                                                                          dp_group):
    from ray import cloudpickle   # Ray's own copy: what its workers unpickle with

    from r1zero.trainer.grpo import GRPOTrainer

    _, _, group = dp_group
    single = GRPOTrainer.from_config(load_config(None, base=recipe(tiny_setup, tmp_path, **SECTIONS)))
    try:
        g = torch.Generator().manual_seed(0)
        prompts = [single.prompts[i].input_ids for i in range(4)]
        seqs = [(p, torch.randint(5, 300, (int(torch.randint(1, 11, (1,), generator=g)),),
                                  generator=g).tolist()) for p in prompts for _ in range(2)]
        adv = torch.randn(8, generator=g)
        want_stats = single.update(seqs, adv)
        want = single.engine.model.state_dict()
    finally:
        single.close()
    assert want_stats["grad_norm"] > 0.05                       # the clip is active
    # each rank's sequences: its prompts' samples; mini-batch k is rank 0's k-th + rank 1's k-th
    shares = [[s * 2 + j for s in shard_prompts(range(4), 2, r, 2) for j in range(2)] for r in (0, 1)]
    assert shares == [[0, 1, 4, 5], [2, 3, 6, 7]]
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        got = group.apply(_one_update, [([seqs[i] for i in idx], adv[idx]) for idx in shares])
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    for rank, (stats, weights, rollout_same, engine) in enumerate(got):
        assert engine == "FSDPTrainEngine"          # the default at 2 ranks
        assert stats == pytest.approx(want_stats, rel=1e-5, abs=1e-7), rank
        worst = max(float((weights[k] - want[k]).abs().max()) for k in want)
        assert worst < 1e-5, (rank, worst)
        assert rollout_same, rank       # the sampler's weights == the gathered actor's, exactly
    assert all(torch.equal(got[0][1][k], got[1][1][k]) for k in want)   # ranks stay in step


def _strip(rec: dict) -> dict:
    """The numbers of a record (ids are compared exactly, apart; timings vary run to run)."""
    return {k: v for k, v in rec.items()
            if not k.startswith(("timing/", "throughput/")) and k != "data/ids"}


def test_sharded_two_rank_run_equals_one_rank_and_resumes_at_either_world_size(
        tiny_setup, tmp_path, dp_group):
    from r1zero.cli.commands import cmd_train
    from r1zero.trainer.data_order import PromptOrder
    from r1zero.data.prompts import load_dataset, output_dir

    cfg, run_dir, group = dp_group
    history = group.run()
    recs = read_metrics(run_dir / "logs" / "metrics.jsonl")
    assert [r["step"] for r in recs] == [1, 2, 3] and len(history) == 3
    for key in ("reward/mean", "reward/std", "reward/format", "reward/accuracy",
                "response_length/mean", "response_length/max", "actor/kl", "actor/grad_norm",
                "actor/lr", "timing/rollout", "timing/update", "reward/errors",
                "throughput/tokens_per_s_per_device"):
        assert key in recs[-1], key
    # the same prompts, in the same order, as one process would consume
    rows = load_dataset(output_dir(cfg)).rows
    order = PromptOrder(len(rows), cfg.data.seed, cfg.data.shuffle)
    assert [r["data/ids"] for r in recs] == [[rows[i].id for i in order.take(4)] for _ in range(3)]
    assert (run_dir / "logs" / "plots" / "reward.png").exists()
    state = torch.load(run_dir / "ckpt" / "step_000003" / "trainer_state.pt", weights_only=False)
    assert len(state["rng_ranks"]) == 2
    assert not torch.equal(state["rng_ranks"][0]["sampler"], state["rng_ranks"][1]["sampler"])

    group.close()                       # frees the 2 CPUs for the runs below
    # one rank, same recipe: the same samples (seeded per step and prompt), metrics within 1e-4
    single = _single_run(tiny_setup, tmp_path / "one")
    print("2 ranks vs 1, worst per-step metric difference:", _worst(recs, single))
    for one, two in zip(single, recs):
        assert one["data/ids"] == two["data/ids"]
        assert _strip(one) == pytest.approx(_strip(two), rel=1e-4, abs=1e-4), one["step"]
    # 2 -> 1: the 2-rank (sharded) step-2 checkpoint resumed in one process redoes step 3
    shutil.copytree(run_dir / "ckpt" / "step_000002", tmp_path / "r21" / "ckpt" / "step_000002")
    r21 = _single_run(tiny_setup, tmp_path / "r21", resume=True)
    print("resume 2 -> 1 ranks, step 3 vs uninterrupted:", _worst(recs[2:], r21))
    assert [r["step"] for r in r21] == [3] and r21[0]["data/ids"] == recs[2]["data/ids"]
    assert _strip(r21[0]) == pytest.approx(_strip(recs[2]), rel=1e-4, abs=1e-4)
    # 1 -> 2: `r1zero train --resume` at 2 ranks from the one-process step-2 checkpoint
    shutil.copytree(tmp_path / "one" / "ckpt" / "step_000002", tmp_path / "ckpt" / "step_000002")
    path = write_recipe(tmp_path / "b.yaml", _dp_recipe(tiny_setup, tmp_path, **SECTIONS))
    assert cmd_train(argparse.Namespace(config=str(path), overrides=[], resume=True)) == 0
    resumed = read_metrics(tmp_path / "logs" / "metrics.jsonl")
    print("resume 1 -> 2 ranks, step 3 vs uninterrupted:", _worst(single[2:], resumed))
    assert [r["step"] for r in resumed] == [3]
    assert _strip(resumed[0]) == pytest.approx(_strip(single[2]), rel=1e-4, abs=1e-4)
    assert resumed[0]["data/ids"] == single[2]["data/ids"]
    assert (tmp_path / "ckpt" / "step_000003" / "meta.json").exists()
    # rollout instances: the 2-rank run above has 2 (rollout.tensor_parallel 1: each rank
    # generates half of the step's prompts); with rollout.tensor_parallel 2 one instance (rank
    # 0) generates them all and rank 1 holds no rollout model: the same samples and metrics
    sections = {**SECTIONS, "rollout": {**SECTIONS["rollout"], "tensor_parallel": 2}}
    path = write_recipe(tmp_path / "i1.yaml", _dp_recipe(tiny_setup, tmp_path / "i1", **sections))
    assert cmd_train(argparse.Namespace(config=str(path), overrides=[], resume=False)) == 0
    one_instance = read_metrics(tmp_path / "i1" / "logs" / "metrics.jsonl")
    print("1 rollout instance vs 2 at 2 ranks, worst per-step metric difference:",
          _worst(one_instance, recs))
    assert [r["step"] for r in one_instance] == [1, 2, 3]
    for one, two in zip(one_instance, recs):
        assert one["data/ids"] == two["data/ids"]
        assert one["response_length/mean"] == two["response_length/mean"]   # the same samples
        assert _strip(one) == pytest.approx(_strip(two), rel=1e-4, abs=1e-4), one["step"]


def _single_run(setup, run_dir, resume: bool = False) -> list[dict]:
    from r1zero.trainer.grpo import GRPOTrainer

    trainer = GRPOTrainer.from_config(load_config(None, base=recipe(setup, run_dir, **SECTIONS)),
                                       resume=resume)
    try:
        trainer.run()
    finally:
        trainer.close()
    return read_metrics(run_dir / "logs" / "metrics.jsonl")


def _worst(a: list[dict], b: list[dict]) -> float:
    """The largest absolute difference of any compared metric over the paired steps."""
    return max(abs(float(x[k]) - float(y[k])) for x, y in zip(a, b) for k in _strip(x)
               if isinstance(x[k], (int, float)))
