"""A preprocessed dataset as the trainer and evaluation read it: prompts (token ids), ground
truth and manifest, one ``PromptRow`` per kept row (``decode_row``: the one place a stored row is
decoded)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import attrs

from r1zero.data.preprocess import load_preprocessed

if TYPE_CHECKING:
    from r1zero.config.recipe import RecipeConfig


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


def output_dir(cfg: RecipeConfig) -> Path:
    """Where ``r1zero preprocess`` writes for this config (``data.output`` or beside input)."""
    if cfg.data.output:
        return Path(cfg.data.output)
    src = Path(cfg.data.input)
    return src.with_name(src.stem + f"_{cfg.template.name}_preprocessed")


def load_dataset(path: str | Path) -> Dataset:
    """The preprocessed dataset in ``path`` (a ``DatasetError`` when it is not one)."""
    table, manifest = load_preprocessed(path)
    return Dataset([decode_row(rec) for rec in table.to_pylist()], manifest)


def decode_row(rec: Mapping[str, Any]) -> PromptRow:
    """One stored row (``r1zero preprocess``'s Parquet columns) as a ``PromptRow``; ``extra`` is
    stored as JSON text."""
    extra = rec.get("extra") or {}
    if isinstance(extra, str):
        extra = json.loads(extra)
    return PromptRow(str(rec["id"]), list(rec["input_ids"]), rec["ground_truth"], extra)
