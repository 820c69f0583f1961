"""The trainer's view of the data: a preprocessed dataset's prompts (token ids), ground truth
and manifest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import attrs


@attrs.frozen
class PromptRow:
    id: str
    input_ids: list[int]
    ground_truth: str
    extra: Mapping[str, Any]


@attrs.frozen
class Dataset:
    """What the trainer consumes: the kept prompts, in file order, and their manifest."""
    rows: list[PromptRow]
    manifest: Any            # r1zero.data.preprocess.Manifest


def output_dir(cfg: Any) -> Path:
    """Where ``r1zero preprocess`` writes for this config (``data.output`` or beside input)."""
    if cfg.data.output:
        return Path(cfg.data.output)
    src = Path(cfg.data.input)
    return src.with_name(src.stem + f"_{cfg.template.name}_preprocessed")


def load_dataset(path: str | Path) -> Dataset:
    """The preprocessed dataset in ``path`` (a ``DatasetError`` when it is not one)."""
    from r1zero.data.preprocess import load_preprocessed

    table, manifest = load_preprocessed(path)
    rows = []
    for rec in table.to_pylist():
        extra = rec.get("extra") or {}
        if isinstance(extra, str):
            extra = json.loads(extra)
        rows.append(PromptRow(str(rec["id"]), list(rec["input_ids"]), rec["ground_truth"], extra))
    return Dataset(rows, manifest)
