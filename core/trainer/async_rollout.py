"""Rollout overlapped with the update: ``rollout.mode`` one_step_off and async.

A rollout worker (one thread with its own copy of the weights and its own torch threads,
``backend.rollout_threads``) generates and scores the batches of later steps while the actor
trains on the current one; torch releases the GIL inside its ops, so on CPU the two sides run
on separate cores. The weight version of a batch is the number of updates behind its weights.

- ``one_step_off``: step k trains on the batch generated from the weights of step k-2 (steps 1
  and 2 from the initial weights): while the actor trains on step k, the worker generates step
  k+1 from the weights of step k-1. After the update the trainer waits for that batch and
  copies the new weights into the worker's copy (one sync per step). Prompts are drawn and
  seeded in step order by the trainer, so a run is deterministic.
- ``async``: the worker draws and generates batches on its own, as far ahead as
  ``rollout.max_staleness`` allows (batch s starts once the weights of step s-1-max_staleness
  are published); the trainer publishes each update into a staging copy and goes on, the
  worker applies it between batches -- or, with ``rollout.partial``, between two decode steps
  of the batch it is generating, keeping the tokens so far (each token records its version).
  Which version a batch gets depends on timing: async runs are not bit-reproducible.

Every sample keeps the rollout's log-probs; the update uses them as pi_old (the behaviour
policy). Checkpoints hold the finished batches not yet trained on (restored as they were) and
the data order before the first unfinished one: a batch in flight at a kill is regenerated
after ``--resume`` from its seeds (seed, step, prompt), with the checkpoint's weights.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from r1zero.engines.sampler import prompt_uniforms
from r1zero.host.errors import CheckpointError, ConfigError, TrainingError
from r1zero.trainer.samples import Samples, prompt_seed

if TYPE_CHECKING:
    from r1zero.config.recipe import RecipeConfig

log = logging.getLogger("r1zero.train")


def check_mode(cfg: "RecipeConfig", dist: Any, algorithm: Any, backend: Any) -> None:
    """Refuse, by key and with the reason, what ``rollout.mode`` cannot honour."""
    r, mode = cfg.rollout, cfg.rollout.mode
    problems = []
    if mode == "sync":
        for key, value, off in (("backend.rollout_threads", cfg.backend.rollout_threads, None),
                                ("rollout.max_staleness", r.max_staleness, 1),
                                ("rollout.partial", r.partial, False),
                                ("rollout.devices", r.devices, None)):
            if value != off:
                problems.append(f"{key}: {value!r} acts only with rollout.mode one_step_off or "
                                f"async (the sync loop has no rollout worker)")
    else:
        if dist is not None:
            problems.append(f"rollout.mode: {mode!r} is implemented for one-process runs only "
                            "(each data-parallel rank would need its own worker); use sync")
        if algorithm.dynamic_sampling:
            problems.append(f"algorithm.dynamic_sampling: its refill rounds generate inside the "
                            f"step from the weights being trained, which rollout.mode {mode!r} "
                            "keeps for the worker; use rollout.mode sync")
        if cfg.algorithm.routing_replay:
            problems.append(f"algorithm.routing_replay: the expert routes of batches generated "
                            f"ahead are not kept in checkpoints nor across a partial rollout's "
                            f"weight sync (rollout.mode {mode!r}); use rollout.mode sync")
        for key in ("offload_train_params", "offload_train_grads", "offload_train_optimizer"):
            if getattr(r, key):
                problems.append(f"rollout.{key}: the actor's state cannot leave the device while "
                                f"it trains beside the rollout (rollout.mode {mode!r})")
        if mode == "one_step_off" and (r.max_staleness != 1 or r.partial):
            problems.append("rollout.max_staleness / rollout.partial: one_step_off is staleness "
                            "1 without interruption by definition; use rollout.mode async")
        engine = backend.rollout_engine_class(cfg)
        if "algorithm.rollout_correction" not in getattr(engine, "implements", ()):
            problems.append(f"rollout.mode: {mode!r} trains on samples of older weights with the "
                            f"rollout's own log-probs as pi_old, which rollout engine "
                            f"{engine.name!r} does not return; use rollout.mode sync")
        if mode == "async" and getattr(engine, "name", "") != "sampler":
            problems.append(f"rollout.mode: 'async' applies staged weights from its worker, "
                            f"which rollout engine {engine.name!r} does not take; use the "
                            "sampler (rollout.engine: sampler) or one_step_off")
        if r.devices is not None and backend.device == "cpu":
            problems.append(f"rollout.devices: {r.devices!r} places the rollout on its own "
                            "accelerator; the cpu backend splits cores instead "
                            "(backend.rollout_threads)")
    if problems:
        raise ConfigError("; ".join(problems))


def thread_split(cfg: "RecipeConfig") -> tuple[int, int]:
    """(trainer threads, rollout worker threads): ``backend.num_threads`` (else all cores)
    shared, the worker's part ``backend.rollout_threads`` (else half, at least 1)."""
    total = cfg.backend.num_threads or os.cpu_count() or 1
    rollout = cfg.backend.rollout_threads or max(1, total // 2)
    if rollout >= total > 1:
        log.warning("backend.rollout_threads %d leaves the trainer none of the %d threads: "
                    "it keeps 1, and the machine is oversubscribed", rollout, total)
    return max(1, total - rollout), rollout


def _worker_threads(n: int) -> None:
    torch.get_num_threads()     # this thread's lazy init first, or it would copy the global
    torch.set_num_threads(n)    # OpenMP sets the calling thread's own count


class RolloutFeed:
    """The rollout worker of a ``GRPOTrainer`` and its batches, step by step.

    ``take(k)`` -> step k's ``Samples``; ``after_update(k)`` after the update of step k;
    ``state()`` / ``load(state)`` for checkpoints; ``quiet()`` while something else uses
    the rollout engine (validation)."""

    def __init__(self, trainer: Any):
        cfg = trainer.cfg
        self.tr, self.cfg, self.mode = trainer, cfg, cfg.rollout.mode
        self.staleness = 1 if self.mode == "one_step_off" else cfg.rollout.max_staleness
        if hasattr(trainer.rollout, "own_weights"):     # vLLM's engine holds its own already
            trainer.rollout.own_weights(cfg.rollout.devices)
        self.held = 0               # version of the worker's weights
        self.published = 0          # newest version the trainer has handed over
        self.staged: dict[str, torch.Tensor] | None = None
        self.batches: dict[int, Samples] = {}   # finished, not yet trained on
        self.drawn: dict[int, dict] = {}         # step -> data order before its prompts
        self.timings: dict[int, dict] = {}       # step -> the worker's rollout/reward seconds
        self.next_step = 1          # the next step the worker (or take) draws for
        self.cond = threading.Condition()
        self.closing = False
        self.error: BaseException | None = None
        self.waited = 0.0
        train_threads, self.rollout_threads = thread_split(cfg)
        if trainer.backend.device == "cpu":
            torch.set_num_threads(train_threads)
        self.pool = ThreadPoolExecutor(1, "r1zero-rollout", initializer=_worker_threads,
                                       initargs=(self.rollout_threads,))
        self.inflight: Any = None   # one_step_off: the future of the next step's batch
        self.loop: Any = None       # async: the worker's loop

    # -- the worker ------------------------------------------------------------------------
    def _produce(self, step: int, rows: list) -> Samples:
        """Generate and score ``rows`` for ``step`` on the worker's weights (partial: across
        weight syncs)."""
        tr, r = self.tr, self.cfg.rollout
        seeds = [prompt_seed(self.cfg.actor.seed, step, row.id) for row in rows]
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        if self.mode == "async" and r.partial:
            out, versions = self._partial(rows, seeds)
        else:
            out = tr.rollout.generate([row.input_ids for row in rows], r.n_samples_per_prompt,
                                      tr.generator, seeds=seeds)
            versions = [[self.held] * len(resp) for resp in out.response_ids]
        if any(len(lp) != len(resp) for lp, resp in zip(out.logprobs, out.response_ids)):
            raise TrainingError(f"rollout of step {step}: not one log-prob per response token; "
                                f"rollout.mode {self.mode!r} needs them as pi_old")
        timings["rollout"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        samples = tr.score_rollout(rows, out, versions)
        timings["reward"] = time.perf_counter() - t0
        with self.cond:
            self.timings[step] = timings
        return samples

    def _partial(self, rows: list, seeds: list) -> tuple[Any, list]:
        """Generate with the weights synced whenever a newer version is published: the
        unfinished rows continue from their tokens so far, with the rest of their uniforms."""
        tr, r = self.tr, self.cfg.rollout
        n, budget = r.n_samples_per_prompt, r.max_response_length
        uniforms = prompt_uniforms(seeds, n, budget, torch.device("cpu"))
        interrupt = lambda: self.published > self.held     # noqa: E731
        out = tr.rollout.generate([row.input_ids for row in rows], n, seeds=seeds,
                                  uniforms=uniforms, interrupt=interrupt)
        versions = [[self.held] * len(resp) for resp in out.response_ids]
        while out.interrupted_at is not None:
            self._apply_staged()
            done = out.interrupted_at
            todo = [i for i, f in enumerate(out.finished) if not f]
            more = tr.rollout.generate(
                [list(rows[out.prompt_index[i]].input_ids) + out.response_ids[i] for i in todo],
                1, uniforms=uniforms[todo, done:], interrupt=interrupt,
                max_new_tokens=budget - done)
            for j, i in enumerate(todo):
                out.response_ids[i] += more.response_ids[j]
                out.logprobs[i] += more.logprobs[j]
                out.finished[i] = more.finished[j]
                versions[i] += [self.held] * len(more.response_ids[j])
            out.interrupted_at = None if more.interrupted_at is None else \
                done + more.interrupted_at
        return out, versions

    def _apply_staged(self) -> None:
        with self.cond:
            staged, version = self.staged, self.published
        if staged is not None and version > self.held:
            self.tr.rollout.sync_weights(staged.items())
            self.held = version

    def _draw(self, step: int) -> list:
        with self.cond:
            self.drawn[step] = self.tr.order.state()
            return self.tr._draw()

    def _run_async(self) -> None:
        """The async worker: batch after batch, each once its staleness bound allows."""
        last = self.cfg.actor.train_iters
        try:
            while True:
                with self.cond:
                    step = self.next_step
                    while not self.closing and step <= last and \
                            self.published < step - 1 - self.staleness:
                        self.cond.wait()
                    if self.closing or step > last:
                        return
                    self.next_step += 1
                self._apply_staged()
                samples = self._produce(step, self._draw(step))
                with self.cond:
                    self.batches[step] = samples
                    self.cond.notify_all()
        except BaseException as exc:    # handed to the trainer by take()
            with self.cond:
                self.error = exc
                self.cond.notify_all()

    # -- the trainer's side ----------------------------------------------------------------
    def take(self, step: int) -> Samples:
        """Step ``step``'s samples (waits for the worker); one_step_off submits the next."""
        t0 = time.perf_counter()
        if self.mode == "one_step_off":
            if step not in self.batches:
                self.next_step = step
                self._submit()
                self.batches[step] = self.inflight.result()
                self.inflight = None
            if step < self.cfg.actor.train_iters:
                self._submit()
        else:
            if self.loop is None:
                self.loop = self.pool.submit(self._run_async)
            with self.cond:
                while step not in self.batches and self.error is None:
                    self.cond.wait()
        if self.error is not None:
            raise self.error
        with self.cond:
            samples = self.batches.pop(step)
            self.drawn.pop(step, None)
        self.waited += time.perf_counter() - t0
        return samples

    def _submit(self) -> None:
        step = self.next_step
        rows = self._draw(step)     # in the trainer's thread: the order is the step order
        self.inflight = self.pool.submit(self._produce, step, rows)
        self.inflight.step = step
        self.next_step += 1

    def after_update(self, step: int) -> None:
        """Hand the weights of ``step`` to the worker: one_step_off waits for the batch in
        flight, then syncs; async stages a copy and goes on."""
        if self.mode == "one_step_off":
            if self.inflight is not None:
                t0 = time.perf_counter()
                f, self.inflight = self.inflight, None
                self.batches[f.step] = f.result()
                self.waited += time.perf_counter() - t0     # the step's wait, in its metrics
            self.tr.rollout.sync_weights()
            self.held = self.published = step
            return
        staged = {name: t.detach().clone() for name, t in self.tr.engine.full_weights()}
        with self.cond:
            self.staged, self.published = staged, step
            self.cond.notify_all()

    def metrics(self, samples: Samples, step: int) -> dict[str, float]:
        """Staleness of the step's tokens (versions behind the weights being trained) and the
        trainer's wait for them."""
        flat = [v for vs in samples.versions or [] for v in vs] or [step - 1]
        behind = (step - 1) - np.asarray(flat)
        with self.cond:
            timings = self.timings.pop(step, {})
        waited, self.waited = self.waited, 0.0
        return {"rollout/staleness_mean": float(behind.mean()),
                "rollout/staleness_max": int(behind.max()),
                **{f"timing/{k}": v for k, v in timings.items()},
                "timing/wait_rollout": waited}

    @contextmanager
    def quiet(self):
        """No batch is generated inside (async: the worker pauses after its current batch)."""
        if self.mode == "one_step_off" or self.loop is None:
            yield
            return
        with self.cond:
            self.closing = True
            self.cond.notify_all()      # a worker waiting on its staleness bound stops too
        self.loop.result()
        self.loop = None
        try:
            yield
        finally:
            with self.cond:
                self.closing = False

    # -- checkpoints -----------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """The finished batches not trained on yet and the data order before the first
        batch that is not finished (its prompts are drawn again after a resume)."""
        with self.cond:
            done = {s: b for s, b in self.batches.items()}
            open_steps = sorted(s for s in self.drawn if s not in done)
            order = self.drawn[open_steps[0]] if open_steps else self.tr.order.state()
            return {"data": order, "rollout_batches": {
                str(s): _batch_state(b) for s, b in sorted(done.items())},
                "rollout_version": self.held}

    def load(self, state: dict, path: Any) -> None:
        """Restore the finished batches of a checkpoint (the data order is the trainer's)."""
        batches = state.get("rollout_batches", {})
        rows = {row.id: row for row in self.tr.prompts}
        try:
            for s, b in batches.items():
                self.batches[int(s)] = _batch_from(b, rows)
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"its rollout batches do not fit this run's data: {exc}",
                                  path=str(path)) from None
        self.next_step = max([self.tr.step + 1, *(s + 1 for s in self.batches)])
        self.held = self.published = self.tr.step

    def close(self) -> None:
        with self.cond:
            self.closing = True
            self.cond.notify_all()
        self.pool.shutdown(wait=True)


def _batch_state(b: Samples) -> dict[str, Any]:
    return {"ids": [row.id for row in b.rows], "group": b.group, "response_ids": b.response_ids,
            "finished": b.finished, "rewards": b.rewards, "components": b.components,
            "counts": b.counts, "logprobs": b.logprobs, "versions": b.versions}


def _batch_from(d: dict, rows: dict) -> Samples:
    return Samples([rows[i] for i in d["ids"]], list(d["group"]), d["response_ids"],
                   d["finished"], d["rewards"], d["components"], d["counts"], d["logprobs"],
                   None, d["versions"])
