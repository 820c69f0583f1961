"""Validation during training: greedy accuracy, pass@k and mean@k on ``data.val_input``.

The held-out file goes through the same handler, template and tokenizer as the training data
(preprocessed beside it, into ``<data output>_val``). Validation runs at step 0, every
``logging.val_interval`` steps and at the last step, on the main rank, with the trainer's rollout
engine and scoring pool; its own generator (seeded from ``actor.seed``, the same every time) keeps
the training stream and an exact resume untouched. Metrics: ``val/accuracy`` (greedy),
``val/pass@k`` and ``val/mean@k`` (k = ``rollout.val_n`` samples at ``rollout.temperature``),
``val/format_rate``, ``val/response_length``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from r1zero.data.prompts import output_dir
from r1zero.evaluate.generate import answer, summarize
from r1zero.host.errors import ConfigError

if TYPE_CHECKING:
    from r1zero.config.recipe import RecipeConfig

log = logging.getLogger(__name__)


def val_output_dir(cfg: RecipeConfig) -> Path:
    train = output_dir(cfg)
    return train.with_name(train.name + "_val")


class Validation:
    """Built by the trainer (``Validation.build``); ``metrics(step, last)`` is {} on steps
    that do not validate. ``problems``, ``first`` and ``last`` (``evaluate.generate.Answers``)
    let a caller show responses, as ``r1zero demo`` does."""
    def __init__(self, cfg: RecipeConfig, trainer: Any):
        from r1zero.evaluate.problems import for_input, load_problems

        self.cfg, self.trainer = cfg, trainer
        self.first: Any = None      # Answers of the first validation (the base model at step 0)
        self.last: Any = None       # ... and of the latest one
        self.problems = load_problems(for_input(trainer.resolved, cfg.data.val_input,
                                                val_output_dir(cfg)))
        if not self.problems.rows:
            raise ConfigError(f"no validation problems left (longer than rollout.max_prompt_length:"
                              f" {self.problems.n_filtered})", path=cfg.data.val_input,
                              key="data.val_input")

    @classmethod
    def build(cls, trainer: Any) -> "Validation | None":
        cfg = trainer.cfg
        if not cfg.data.val_input or not trainer.is_main:
            return None
        return cls(cfg, trainer)

    def due(self, step: int, last: bool) -> bool:
        interval = self.cfg.logging.val_interval
        return step == 0 or last or bool(interval and step % interval == 0)

    def metrics(self, step: int, last: bool = False) -> dict[str, Any]:
        if not self.due(step, last):
            return {}

        t0 = time.perf_counter()
        tr, r = self.trainer, self.cfg.rollout
        gen = torch.Generator().manual_seed(self.cfg.actor.seed + 7)
        answers = answer(tr.rollout, tr.tokenizer, tr.scoring, self.problems.rows, r.val_n,
                         r.temperature, gen, batch_size=max(1, self.cfg.actor.global_batch_size))
        if self.first is None:
            self.first = answers
        self.last = answers
        s = summarize(answers, r.val_n)
        k = s["k"]
        out = {"val/accuracy": s["accuracy"], f"val/pass@{k}": s[f"pass@{k}"],
               f"val/mean@{k}": s[f"mean@{k}"], "val/response_length": s["response_length"],
               "val/n_problems": s["n_problems"], "timing/validation": time.perf_counter() - t0}
        if s["format_rate"] is not None:
            out["val/format_rate"] = s["format_rate"]
        log.info("validation at step %d: accuracy %.3f, pass@%d %.3f", step, s["accuracy"], k,
                 s[f"pass@{k}"])
        return out
