"""The trainer's view of the data: preprocessed prompts (token ids) with their ground truth."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import attrs

from r1zero.host.registry import get_handler, get_template


@attrs.frozen
class PromptRow:
    id: str
    input_ids: list[int]
    ground_truth: str
    extra: Mapping[str, Any]


def output_dir(cfg: Any) -> Path:
    """Where ``r1zero preprocess`` writes for this config (``data.output`` or beside input)."""
    if cfg.data.output:
        return Path(cfg.data.output)
    src = Path(cfg.data.input)
    return src.with_name(src.stem + f"_{cfg.template.name}_preprocessed")


def run_preprocess(cfg: Any, host: Any = None, force: bool = False, skip_bad_rows: bool | None = None):
    """Preprocess ``cfg.data.input`` (reusing an identical earlier output)."""
    from r1zero.config.load import to_dict
    from r1zero.data.preprocess import preprocess

    if not cfg.data.input:
        from r1zero.host.errors import ConfigError

        raise ConfigError("no input dataset: set data.input", key="data.input")
    handler = get_handler(cfg.data.handler, cfg.data.handler_plugin, host)
    template = get_template(cfg.template.name, cfg.template.file, cfg.template.plugin, host)
    return preprocess(
        cfg.data.input, handler, template, cfg.model.tokenizer or cfg.model.path, output_dir(cfg),
        map_keys=cfg.data.map_keys, max_prompt_length=cfg.rollout.max_prompt_length,
        workers=cfg.data.workers,
        skip_bad_rows=cfg.data.skip_bad_rows if skip_bad_rows is None else skip_bad_rows,
        config={"data": to_dict(cfg.data), "template": to_dict(cfg.template)}, force=force)


def load_prompts(cfg: Any, tokenizer: Any, host: Any = None) -> list[PromptRow]:
    from r1zero.data.preprocess import load_preprocessed

    run_preprocess(cfg, host)
    table, _manifest = load_preprocessed(output_dir(cfg))
    records = table.to_pylist() if hasattr(table, "to_pylist") else list(table)
    rows = []
    for rec in records:
        extra = rec.get("extra") or {}
        if isinstance(extra, str):
            extra = json.loads(extra)
        rows.append(PromptRow(str(rec["id"]), list(rec["input_ids"]), rec["ground_truth"], extra))
    return rows
