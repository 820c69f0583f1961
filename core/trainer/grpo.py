"""The GRPO loop of the R1-Zero recipe, in-process on one machine.

    r1zero train examples/r1_zero_qwen2.5_0.5b_cpu.yaml [key=value ...] [--resume]

Each step reads like the data path: rollout -> score -> advantages -> reference log-probs ->
clipped-loss updates -> weight sync -> metrics -> checkpoint.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch

from r1zero.algo.filters import varied_groups
from r1zero.config.load import write_recipe
from r1zero.data.pipeline import Resolved, from_config, prepare, stop_sequences
from r1zero.data.prompts import Dataset, load_dataset, output_dir
from r1zero.host.errors import CheckpointError
from r1zero.scoring.pool import ScoringPool
from r1zero.trainer import checkpoint, guards, preflight
from r1zero.trainer.async_rollout import RolloutFeed, check_mode
from r1zero.trainer.batching import check_dynamic_bsz
from r1zero.trainer.data_order import PromptOrder
from r1zero.trainer.metrics import MetricsWriter, plot_curves, tokens_per_s_per_device
from r1zero.trainer.progress import progress
from r1zero.trainer.samples import Samples, pick, prompt_seed
from r1zero.trainer.update import PolicyUpdate
from r1zero.trainer.validate import Validation

if TYPE_CHECKING:
    from r1zero.config.recipe import RecipeConfig

log = logging.getLogger(__name__)


class GRPOTrainer(PolicyUpdate):
    def __init__(self, run: Resolved, *, data: Dataset | None = None, resume: bool = False,
                 dist: Any = None):
        """``run``: the resolved recipe (``pipeline.resolve``). ``data``: the prepared dataset;
        None prepares it here (``pipeline.prepare``: built if missing or stale, else reused).
        ``dist``: a ``trainer.dist.DataParallel`` when this is one rank of a data-parallel run
        (``trainer.ray_runner``); None for one process."""
        from transformers import AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        cfg = run.cfg
        self.resolved, self.cfg, self.dist = run, cfg, dist
        self.is_main = dist is None or dist.is_main
        self.backend, self.algorithm = run.backend, run.algorithm
        self.backend.require()
        self.backend.validate_layout(cfg)
        # a key no chosen engine acts on: refused
        self.backend.refuse_unimplemented(cfg, dist.world if dist else 1)
        check_mode(cfg, dist, self.algorithm, self.backend)     # rollout.mode's refusals
        self.lock = preflight.start(cfg, resume, lock=dist is None)
        self.backend.setup(cfg)
        check_dynamic_bsz(cfg)
        _seed_all(cfg.actor.seed)
        self.tokenizer = AutoTokenizer.from_pretrained(cfg.model.tokenizer or cfg.model.path)
        if data is None:
            prepare(run)
            data = load_dataset(output_dir(cfg))
        self.data, self.prompts = data, data.rows
        self.engine = self.backend.make_train_engine(
            cfg, self.tokenizer, **({"dist": dist} if dist is not None else {}))
        if dist is not None and hasattr(self.engine, "data_parallel"):
            dist.adopt(self.engine.data_parallel())     # megatron's tp x pp x dp layout
        if dist is not None:
            dist.lay_out_instances(cfg.rollout.tensor_parallel, cfg.rollout.pipeline_parallel)
        self.rollout = self.backend.make_rollout_engine(
            cfg, self.engine, self.tokenizer, stop_sequences(self.tokenizer, run.template),
            generates=dist is None or dist.generates)
        if dist is not None and not getattr(self.rollout, "synced_at_build", False):
            # gathering the actor's weights is collective: sync on every rank now, not lazily
            # inside generate, which only the instances' generating ranks call
            self.rollout.sync_weights()
        self.scoring = ScoringPool(run.scorers, workers=cfg.scoring.workers,
                                   timeout_s=cfg.scoring.timeout_s)
        self.order = PromptOrder(len(self.prompts), cfg.data.seed, cfg.data.shuffle)
        self.generator = torch.Generator().manual_seed(cfg.actor.seed + (dist.rank if dist else 0))
        self.validation = Validation.build(self)
        self.feed = RolloutFeed(self) if cfg.rollout.mode != "sync" else None
        self.step = 0
        if resume:
            self._resume()
        guards.check_weights(self.engine.model, f"model {cfg.model.path}" if not resume else
                             f"checkpoint at step {self.step}")
        if cfg.rollout.n_samples_per_prompt == 1:
            log.warning("rollout.n_samples_per_prompt is 1: a GRPO group of one sample has "
                        "advantage 0, so the policy loss never moves the weights; use >= 2")
        self.writer = MetricsWriter(cfg.logging.dir, cfg.logging.tensorboard,
                                    resume_step=self.step if resume else None,
                                    wandb=cfg.logging.wandb, run_config=cfg) \
            if self.is_main else dist.null_writer()
        if self.is_main:
            write_recipe(cfg, cfg.checkpoint.dir)    # for `r1zero eval CHECKPOINT`
        self.timings: dict[str, float] = {}

    @classmethod
    def from_config(cls, cfg: RecipeConfig, resume: bool = False) -> "GRPOTrainer":
        """A trainer for ``cfg`` with the plugin host its ``plugins:`` section describes."""
        return cls(from_config(cfg), resume=resume)

    # -- loop --------------------------------------------------------------------------
    def run(self, on_step: Callable[[int, dict], None] | None = None) -> list[dict]:
        cfg, history = self.cfg, []
        bar = _progress(cfg, self.step) if self.is_main else None
        try:
            if self.validation is not None and self.step == 0:
                with self._quiet():
                    self.writer.write(0, self.validation.metrics(0))
            while self.step < cfg.actor.train_iters:
                self.step += 1
                metrics = self.train_step()
                if self.validation is not None:
                    with self._quiet():
                        metrics.update(self.validation.metrics(self.step,
                                                               self.step == cfg.actor.train_iters))
                history.append(metrics)
                if self.step % cfg.logging.log_interval == 0 or self.step == cfg.actor.train_iters \
                        or "val/accuracy" in metrics:
                    self.writer.write(self.step, metrics)
                interval = cfg.checkpoint.save_interval
                if (interval and self.step % interval == 0) or self.step == cfg.actor.train_iters:
                    self.save()
                if bar is not None:
                    bar.set_postfix(reward=f"{metrics['reward/mean']:.3f}",
                                    fmt=f"{metrics.get('reward/format', float('nan')):.2f}",
                                    acc=f"{metrics.get('reward/accuracy', float('nan')):.2f}")
                    bar.update(1)
                if on_step is not None:
                    on_step(self.step, metrics)
        finally:
            if bar is not None:
                bar.close()
            if self.feed is not None:     # the rollout worker's thread ends with the run
                self.feed.close()
            self.writer.close()
        if cfg.logging.plots and self.is_main:
            plot_curves(self.writer.path, Path(cfg.logging.dir) / "plots", cfg.name)
        return history

    def train_step(self) -> dict[str, Any]:
        self.timings = {}
        t0 = time.perf_counter()
        # rollout.mode one_step_off / async: a batch generated beside the previous update
        drawn = self.feed.take(self.step) if self.feed is not None else \
            self._generate(self._draw())
        samples, filled = drawn, {}
        if self.algorithm.dynamic_sampling:
            samples, filled = self._fill(drawn)
        alg = self.algorithm
        rewards = torch.tensor(samples.rewards, dtype=torch.float32)
        advantages = alg.advantages(rewards, torch.as_tensor(samples.group))
        seqs = [(r.input_ids, resp) for r, resp in zip(samples.owners, samples.response_ids)]
        train = [i for i, done in enumerate(samples.finished) if done or not alg.overlong_mask]
        behaviour = pick(samples.logprobs, train)      # the rollout's log-probs
        update = self.update([seqs[i] for i in train], advantages[train], behaviour,
                             pick(samples.routes, train),
                             behaviour_old=self.feed is not None) if train else {}
        alg.kl_ctrl.update(update.get("kl", 0.0), len(train))
        if self.feed is not None:
            self.feed.after_update(self.step)
        else:
            self.rollout.sync_weights()
        step_s = time.perf_counter() - t0
        m = self._metrics(drawn, update, step_s)
        m.update(filled)
        m["actor/kl_coef"] = alg.kl_ctrl.value
        if self.feed is not None:
            m.update(self.feed.metrics(drawn, self.step))
        count = self.dist.sum_int if self.dist is not None else int   # over the dp ranks
        if alg.overlong_mask:
            m["algorithm/overlong_masked"] = count(len(seqs) - len(train))
        m["algorithm/trained_samples"] = count(len(train))
        return m

    def _draw(self) -> list:
        """The next global batch of prompts (the same on every rank)."""
        return [self.prompts[i] for i in self.order.take(self.cfg.actor.global_batch_size)]

    def _generate(self, rows: list) -> Samples:
        """Rollout and scoring of ``rows``: n samples per prompt, each with its reward. With
        several ranks the rollout instances generate slices of ``rows`` and each rank keeps its
        data-parallel share (a GRPO group never spans ranks)."""
        if self.dist is None:
            return self._rollout_and_score(rows)
        cfg = self.cfg
        return self.dist.instance_samples(rows, self._rollout_and_score,
                                          cfg.actor.mini_batch_size or cfg.actor.global_batch_size)

    def _rollout_and_score(self, rows: list) -> Samples:
        with self._timer("rollout"):
            seeds = [prompt_seed(self.cfg.actor.seed, self.step, r.id) for r in rows]
            out = self.rollout.generate([r.input_ids for r in rows],
                                        self.cfg.rollout.n_samples_per_prompt, self.generator,
                                        seeds=seeds)
        with self._timer("reward"):
            return self.score_rollout(rows, out)

    def score_rollout(self, rows: list, out: Any, versions: list | None = None) -> Samples:
        """The rollout ``out`` of ``rows`` (a ``SampleOutput``), scored."""
        texts = self.tokenizer.batch_decode(out.response_ids, skip_special_tokens=True)
        owners = [rows[i] for i in out.prompt_index]
        extras = [{**r.extra, "response_tokens": len(resp)}
                  for r, resp in zip(owners, out.response_ids)]
        scored = self.scoring.score(texts, [r.ground_truth for r in owners], extras)
        return Samples.of(rows, out, scored, versions)

    def _fill(self, drawn: Samples) -> tuple[Samples, dict[str, float]]:
        """DAPO's dynamic sampling: keep the groups whose rewards differ and refill the batch
        from further prompts, at most ``algorithm.max_resample`` extra rounds; the batch is
        then the first ``global_batch_size`` kept groups (fewer when the rounds ran out)."""
        want = len(drawn.rows)
        kept = drawn.keep(varied_groups(drawn.rewards, drawn.group))
        rounds = 0
        while len(kept.rows) < want and rounds < self.algorithm.max_resample:
            rounds += 1
            more = self._generate(self._draw())
            kept.extend(more.keep(varied_groups(more.rewards, more.group)))
        if len(kept.rows) < want:
            log.info("step %d: dynamic sampling kept %d of %d groups after %d extra rounds",
                     self.step, len(kept.rows), want, rounds)
        kept = kept.keep(range(min(want, len(kept.rows))))
        return kept, {"algorithm/resample_rounds": rounds, "algorithm/groups_kept": len(kept.rows)}

    # -- metrics, checkpoints --------------------------------------------------------
    def _metrics(self, samples: Samples, update: dict, step_s: float) -> dict[str, Any]:
        """The step's metrics, over the batch as drawn (before any dynamic-sampling filter)."""
        cfg, n = self.cfg, self.cfg.rollout.n_samples_per_prompt
        rows = samples.rows
        s = {"ids": [r.id for r in rows], "plens": [len(r.input_ids) for r in rows],
             "lens": [len(r) for r in samples.response_ids], "finished": list(samples.finished),
             "rewards": list(samples.rewards), "components": dict(samples.components),
             "counts": dict(samples.counts)}
        timings = self.timings
        if self.dist is not None:       # all ranks' samples in rank order; the slowest rank's times
            s, timings, step_s = self.dist.merge_step(s, timings, step_s)
        lens, plens = s["lens"], s["plens"]
        m: dict[str, Any] = {
            "reward/mean": float(np.mean(s["rewards"])),
            "reward/std": float(np.std(s["rewards"])),
            "response_length/mean": float(np.mean(lens)),
            "response_length/max": int(max(lens)),
            "response_length/clipped": float(np.mean([not f for f in s["finished"]])),
            "prompt_length/mean": float(np.mean(plens)),
        }
        for key, values in s["components"].items():
            m[f"reward/{key}"] = float(np.mean(values))
            comp = key.split("/", 1)[1]
            if comp != "reward":
                m.setdefault(f"reward/{comp}", float(np.mean(values)))
        m.update({k: v for k, v in s["counts"].items()})
        m.update({k if k.startswith("rollout/") else f"actor/{k}": v for k, v in update.items()})
        m.update({f"timing/{k}": v for k, v in timings.items()})
        m["timing/all"] = step_s
        m["throughput/tokens_per_s_per_device"] = tokens_per_s_per_device(
            float(np.mean(plens)), float(np.mean(lens)), len(plens), n, self.backend.world_size(cfg), step_s)
        m["throughput/completions_per_s"] = len(lens) / step_s
        m["data/ids"] = s["ids"]
        return m

    def save(self) -> Path | None:
        extra = {"data": self.order.state(), "rng": checkpoint.rng_state(self.generator),
                 "step": self.step, "kl_coef": self.algorithm.kl_ctrl.value}
        if self.dist is not None:       # every rank's sampler stream, for an exact resume
            extra["rng_ranks"] = self.dist.gather(extra["rng"])
        if self.feed is not None:       # batches generated ahead, the order before the rest
            extra.update(self.feed.state())
        return checkpoint.save(self.cfg.checkpoint.dir, self.step, self.engine, self.tokenizer,
                               extra, self.cfg.checkpoint.keep_last, dist=self.dist)

    def _resume(self) -> None:
        found = checkpoint.load_for_resume(self.cfg.checkpoint.dir, self.cfg.checkpoint.load,
                                           self.engine)
        if found is None:
            log.warning("--resume: no checkpoint under %s; starting at step 0",
                        self.cfg.checkpoint.dir)
            return
        path, state = found
        self.rollout.sync_weights()     # a sampler's own copy still holds the initial weights
        try:
            self.order.load(state["data"])
        except ValueError as exc:
            raise CheckpointError(f"cannot resume this run from it: {exc}", path=str(path)) from None
        rng = state["rng"] if self.dist is None else self.dist.rank_rng(state)
        if rng:
            checkpoint.set_rng_state(rng, self.generator)
        self.step = state["step"]
        if self.feed is not None:
            self.feed.load(state, path)
        if "kl_coef" in state:          # an adaptive controller's value at the checkpoint
            self.algorithm.kl_ctrl.value = state["kl_coef"]
        log.info("resumed from %s at step %d", path, self.step)

    def _quiet(self):
        """No rollout beside what runs inside (validation uses the rollout engine)."""
        return self.feed.quiet() if self.feed is not None else contextlib.nullcontext()

    @contextmanager
    def _timer(self, name: str):
        t = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - t

    def close(self) -> None:
        if self.feed is not None:
            self.feed.close()
        self.scoring.close()
        if self.lock is not None:
            self.lock.release()


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def _progress(cfg: RecipeConfig, start: int):
    if not cfg.logging.progress:
        return None
    return progress(cfg.actor.train_iters, start, cfg.name, "step", every=cfg.logging.log_interval)
