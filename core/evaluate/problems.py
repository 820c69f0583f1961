"""An evaluation set: a dataset file through the recipe's handler and template (the same
preprocessing as training), with each row's prompt text and, when the raw record has one,
its ``source`` (or ``data_source``) field for a per-source breakdown."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs

from r1zero.data.pipeline import prepare
from r1zero.data.preprocess import load_preprocessed
from r1zero.data.prompts import PromptRow, decode_row, output_dir
from r1zero.data.records import read_records

SOURCE_FIELDS = ("source", "data_source")


@attrs.frozen
class Problems:
    rows: list[PromptRow]
    prompts: list[str]
    sources: list[str | None]
    n_filtered: int = 0       # prompts longer than rollout.max_prompt_length, left out


def for_input(run: Any, input_path: str, output_dir: str | Path) -> Any:
    """The resolved run ``run`` reading ``input_path`` and preprocessing into ``output_dir``
    (handler, template, tokenizer and max_prompt_length unchanged)."""
    cfg = run.cfg
    return attrs.evolve(run, cfg=attrs.evolve(cfg, data=attrs.evolve(
        cfg.data, input=str(input_path), output=str(output_dir))))


def load_problems(run: Any, limit: int | None = None) -> Problems:
    """Preprocess ``run.cfg.data.input`` (reused when unchanged) and read it back."""
    manifest = prepare(run)
    table, _ = load_preprocessed(output_dir(run.cfg))
    records = table.to_pylist()
    if limit is not None:
        records = records[:limit]
    raw_source = _sources(read_records(run.cfg.data.input)) if records else {}
    rows, prompts, sources = [], [], []
    for rec in records:
        rows.append(decode_row(rec))
        prompts.append(rec["prompt"])
        sources.append(raw_source.get(rec.get("row")))
    return Problems(rows, prompts, sources, manifest.n_filtered_length)


def _sources(records) -> dict[int, str]:
    out = {}
    for row, rec in records:
        for name in SOURCE_FIELDS:
            value = rec.get(name)
            if isinstance(value, (str, int)) and not isinstance(value, bool) and value != "":
                out[row] = str(value)
                break
    return out
