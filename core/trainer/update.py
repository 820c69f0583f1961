"""The trainer's policy update: PPO-style epochs over mini-batches of (prompt, response)
sequences, the registered objective on each micro-batch weighted by its share of the
mini-batch, one optimizer step per mini-batch. ``GRPOTrainer`` inherits it; an engine that
schedules micro-batches itself (megatron's pipeline, ``schedules_micro_batches``) gets each
mini-batch's micro-batches at once."""

from __future__ import annotations

import random

import torch

from r1zero.algo.rollout_corr import add_sums, mismatch_metrics, mismatch_sums
from r1zero.engines.routing import response_routes
from r1zero.host.errors import ConfigError
from r1zero.trainer import guards
from r1zero.trainer.batching import split_to, token_budget_chunks
from r1zero.engines.packing import PackedBatch
from r1zero.engines.torch_engine import SeqBatch


class PolicyUpdate:
    """Mixed into ``GRPOTrainer``: uses its ``cfg``, ``engine``, ``algorithm``, ``dist``,
    ``step`` and ``_timer``."""

    def _micro_batches(self, order: list[int], seqs: list) -> list[list[int]]:
        """Chunks of ``micro_batch_size`` sequences (or within ``max_packing_token_size``
        tokens: padded under ``use_dynamic_bsz``, packed under ``use_remove_padding``), sorted by (prompt length, prompt, response length):
        a prompt's samples stay together, so its prompt runs once per chunk
        (``engine.response_logits``), and padding stays small. Ranks of a sharded engine get
        the same number of chunks (its forwards are collectives)."""
        by_len = sorted(order, key=lambda i: (len(seqs[i][0]), seqs[i][0], len(seqs[i][1])))
        a = self.cfg.actor
        if a.max_packing_token_size:
            lengths = {i: (len(seqs[i][0]), len(seqs[i][1])) for i in by_len}
            chunks = token_budget_chunks(by_len, lengths, a.max_packing_token_size,
                                         packed=a.use_remove_padding)
        else:
            mbs = a.micro_batch_size
            chunks = [by_len[i:i + mbs] for i in range(0, len(by_len), mbs)]
        if self.dist is not None and self.engine.reduces_grads:
            chunks = split_to(chunks, self.dist.max_int(len(chunks)))
        return chunks

    def _batch(self, idx: list[int], seqs: list) -> SeqBatch | PackedBatch:
        """Micro-batch ``idx`` laid out padded, or packed into one row (``use_remove_padding``)."""
        kind = PackedBatch if self.cfg.actor.use_remove_padding else SeqBatch
        batch = kind([seqs[i][0] for i in idx], [seqs[i][1] for i in idx],
                     self.engine.pad_id, self.engine.device)
        routes = getattr(self, "_routes", None)
        if routes is not None:      # the rollout's experts, for the engine to replay
            shape = next(r.shape for r in routes if r is not None)
            batch.routes = response_routes([routes[i] for i in idx], batch.response_ids.shape[1],
                                           shape[1], shape[2])
        return batch

    @torch.no_grad()
    def _logprobs_of(self, model, micro: list[list[int]], seqs: list) -> dict[int, torch.Tensor]:
        """Sequence index -> its response log-probs under ``model`` (the actor or the
        reference). An engine that schedules micro-batches itself (megatron's pipeline) has
        them on its last pipeline stage only, where the loss is computed."""
        out: dict[int, torch.Tensor] = {}
        eng, temperature = self.engine, self.cfg.rollout.temperature
        if getattr(eng, "schedules_micro_batches", False):
            got = eng.logprobs_of([self._batch(idx, seqs) for idx in micro], temperature,
                                  reference=model is eng.ref)
            per_micro = zip(micro, got or [])
        else:
            per_micro = ((idx, eng.logprobs(model, self._batch(idx, seqs), temperature)[0])
                         for idx in micro)
        for idx, logp in per_micro:
            for row, i in enumerate(idx):
                out[i] = logp[row, :len(seqs[i][1])]
        return out

    def update(self, seqs: list, advantages: torch.Tensor,
               rollout_logp: list[list[float]] | None = None,
               routes: list | None = None, behaviour_old: bool = False) -> dict[str, float]:
        """PPO-style updates on (prompt_ids, response_ids) pairs with per-sequence advantages.
        ``rollout_logp``: the rollout's log-probs of each response (None when the rollout
        engine returned none): the ``rollout/*`` mismatch metrics against the actor's old
        log-probs, and the algorithm's rollout correction, if any, use them. ``routes``: the
        rollout's expert choices per response (MoE routing replay), attached to every
        micro-batch for the engine.
        ``behaviour_old``: the samples came from older weights (``rollout.mode`` one_step_off,
        async): pi_old is ``rollout_logp`` itself, the behaviour policy -- unless a rollout
        correction is set, which then weighs the actor's own pi_old against it (decoupled
        PPO); the mismatch metrics compare the current actor with the rollout."""
        if self.algorithm.correction is not None and rollout_logp is None:
            raise ConfigError("the rollout engine returned no log-probs, which the correction "
                              "needs", key="algorithm.rollout_correction")
        self._rollout_logp, self._routes = rollout_logp, routes
        self._behaviour_old = behaviour_old and rollout_logp is not None
        self._mismatch: dict[str, float] = {}
        cfg, eng = self.cfg, self.engine
        a = cfg.actor
        n_seq = len(seqs)
        mini = (a.mini_batch_size or a.global_batch_size) * cfg.rollout.n_samples_per_prompt
        if self.dist is not None:       # this rank's piece of each mini-batch (dist.shard_prompts)
            mini //= self.dist.dp_world
        everything = self._micro_batches(list(range(n_seq)), seqs)
        logp_ref: dict[int, torch.Tensor] = {}
        if eng.ref is not None:
            with self._timer("reference"):
                logp_ref = self._logprobs_of(eng.ref, everything, seqs)
        on_policy = a.ppo_epochs == 1 and mini >= n_seq
        if self._behaviour_old and self.algorithm.correction is None:
            logp_old = {i: torch.tensor(lp, dtype=torch.float32, device=eng.device)
                        for i, lp in enumerate(rollout_logp)}
        else:
            logp_old = {} if on_policy else self._logprobs_of(eng.model, everything, seqs)
        sums: dict[str, float] = {}
        n_updates = 0
        rng = random.Random(a.seed * 7919 + self.step)
        with self._timer("update"):
            for epoch in range(a.ppo_epochs):
                order = list(range(n_seq))
                if a.shuffle_mini_batch:
                    rng.shuffle(order)
                self._first_epoch = epoch == 0
                for start in range(0, n_seq, mini):
                    part = self._micro_batches(order[start:start + mini], seqs)
                    stats = self._optimizer_step(part, seqs, advantages, logp_ref, logp_old)
                    for k, v in stats.items():
                        sums[k] = sums.get(k, 0.0) + v
                    n_updates += 1
        out = {k: v / max(1, n_updates) for k, v in sums.items()}
        if rollout_logp is not None:
            out.update(self._mismatch_metrics())
        return out

    def _mismatch_metrics(self) -> dict[str, float]:
        """The step's ``rollout/*`` metrics from the sums of every micro-batch of the first
        epoch (each response once), over all ranks."""
        sums = self._mismatch
        if self.dist is not None:
            total: dict[str, float] = {}
            for part in self.dist.gather(sums):
                total = add_sums(total, part) if part else total
            sums = total
        return mismatch_metrics(sums) if sums else {}

    def _optimizer_step(self, micro: list[list[int]], seqs: list, advantages: torch.Tensor,
                        logp_ref: dict, logp_old: dict) -> dict[str, float]:
        """One optimizer step over ``micro`` (the micro-batches of a mini-batch): the
        algorithm's objective on each micro-batch, weighted by its share of the mini-batch
        (tokens for ``token-mean``, sequences otherwise), so the summed loss and gradient are
        those of the objective on the whole mini-batch at once."""
        cfg, eng = self.cfg, self.engine
        token_mean = self.algorithm.loss_agg == "token-mean"
        total = sum(len(seqs[i][1]) for idx in micro for i in idx) if token_mean else \
            sum(len(idx) for idx in micro)
        if self.dist is not None:       # shares of the global mini-batch, not of this rank's piece
            total = self.dist.sum_int(total)
        total = max(1, total)
        eng.optimizer.zero_grad(set_to_none=True)

        def loss_fn(k: int, logp: torch.Tensor, ent: torch.Tensor, batch: SeqBatch):
            """Micro-batch ``k``'s objective, weighted by its share of the mini-batch."""
            idx, mask = micro[k], batch.response_mask
            old = _stack(logp_old, idx, logp) if logp_old else logp.detach()
            ref = _stack(logp_ref, idx, logp) if logp_ref else None
            behaviour = None
            if self._rollout_logp is not None:
                behaviour = _stack_lists(self._rollout_logp, idx, logp)
                if self._first_epoch:
                    actor = logp.detach() if self._behaviour_old else old
                    self._mismatch = add_sums(self._mismatch,
                                              mismatch_sums(actor, behaviour, mask))
            out = self.algorithm.loss(logp, old, advantages[idx].to(logp.device), mask, ref, ent,
                                      behaviour)
            share = (mask.sum().item() if token_mean else len(idx)) / total
            return out["loss"] * share, {name: float(v.detach()) * share for name, v in out.items()}

        batches = [self._batch(idx, seqs) for idx in micro]
        if getattr(eng, "schedules_micro_batches", False):   # megatron: its own 1F1B schedule
            stats = eng.train_micro_batches(batches, cfg.rollout.temperature,
                                            lambda k, lp, h: loss_fn(k, lp, h, batches[k]))
        else:
            stats = {}
            for k, batch in enumerate(batches):
                logp, ent = eng.logprobs(eng.model, batch, cfg.rollout.temperature,
                                         with_entropy=True)
                loss, part = loss_fn(k, logp, ent, batch)
                eng.backward(loss)
                for key, v in part.items():
                    stats[key] = stats.get(key, 0.0) + v
        if self.dist is not None:       # the single-process gradient on every rank, then clip
            if not eng.reduces_grads:
                self.dist.all_reduce_grads(eng.model.parameters())
            stats = self.dist.sum_stats(stats)
        stats["lr"] = eng.optimizer.param_groups[0]["lr"]
        stats["grad_norm"] = eng.step(cfg.actor.clip_grad, check=lambda norm: guards.check_step(
            self.step, {**stats, "grad_norm": norm}))
        guards.check_weights(eng.model, f"step {self.step}")
        return stats


def _stack_lists(per_seq: list[list[float]], idx: list[int], like: torch.Tensor) -> torch.Tensor:
    """Rows ``idx`` of per-sequence float lists, right-padded with 0 to ``like``'s (B, R)."""
    out = torch.zeros_like(like, dtype=torch.float32)
    for row, i in enumerate(idx):
        out[row, :len(per_seq[i])] = torch.tensor(per_seq[i], dtype=torch.float32)
    return out


def _stack(store: dict[int, torch.Tensor], idx: list[int], like: torch.Tensor) -> torch.Tensor:
    out = torch.zeros_like(like)
    for row, i in enumerate(idx):
        out[row, :store[i].shape[0]] = store[i]
    return out
