"""``r1zero eval``: greedy accuracy, pass@k and mean@k of a model on a problem file.

    r1zero eval MODEL_OR_CHECKPOINT --data FILE [--n 8] [--k K] [--temperature 1.0]
                [--max-new-tokens N] [--output DIR] [--config RECIPE] [--scorer NAME]
                [key=value ...]

MODEL_OR_CHECKPOINT is a Hugging Face model directory (``config.json``), an r1zero checkpoint
``step_NNNNNN`` (its ``model/``) or a checkpoint directory (its ``latest``). The recipe (handler,
template, rewards, backend, rollout engine and lengths) is ``--config``, else the
``recipe.yaml`` the trainer wrote beside the checkpoints, else the defaults; dotted overrides
apply on top. A checkpoint's own recipe never decides what code runs: its
``model.trust_remote_code``, ``plugins.modules`` and ``backend.env`` (``CODE_KEYS``) are
refused unless the command line (or ``--config``) sets them. ``--n``, ``--k`` and
``--max-new-tokens`` are bounded before any model is loaded (``evaluate.bounds``). Writes
``DIR/responses.jsonl`` (one line per answer) and ``DIR/summary.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from r1zero.config.load import RECIPE_FILE
from r1zero.config.plan import model_arch
from r1zero.evaluate.bounds import check_eval_bounds, host_memory
from r1zero.evaluate.generate import answer, summarize
from r1zero.host.errors import ConfigError
from r1zero.scoring.pool import ScoringPool
from r1zero.trainer.progress import progress

if TYPE_CHECKING:
    from r1zero.config.recipe import RecipeConfig

# keys that load code (a remote-code model, plugin modules, an environment that can preload
# libraries or set PYTHONPATH for the scoring workers): never taken from a checkpoint's recipe
CODE_KEYS = ("model.trust_remote_code", "plugins.modules", "backend.env")


def resolve_model(path: str | Path) -> tuple[Path, Path | None]:
    """-> (HF model dir, the checkpoint root it came from or None)."""
    from r1zero.trainer import checkpoint

    p = Path(path)
    if not p.exists():
        raise ConfigError("no such model or checkpoint directory", path=str(p))
    if (p / "config.json").is_file():
        root = p.parent.parent if (p.parent / "meta.json").is_file() else None
        return p, root
    if (p / "model" / "config.json").is_file():
        return p / "model", p.parent
    step = checkpoint.latest(p)
    if step is not None and (step / "model" / "config.json").is_file():
        return step / "model", p
    raise ConfigError("neither a Hugging Face model directory (no config.json) nor an r1zero "
                      "checkpoint (no model/config.json, no step_* with meta.json)", path=str(p))


def eval_config(args: argparse.Namespace, model_dir: Path,
                ckpt_root: Path | None) -> tuple[Any, str | None]:
    """-> (the config to evaluate with, the recipe file it started from or None)."""
    from r1zero.config.load import load_config, read_yaml_mapping

    recipe = args.config
    if recipe is None and ckpt_root is not None and (ckpt_root / RECIPE_FILE).is_file():
        recipe = str(ckpt_root / RECIPE_FILE)
    base: dict[str, Any] = {}
    if recipe is not None:
        base = read_yaml_mapping(recipe)
    taken = _drop_code_keys(base) if args.config is None else {}
    out = Path(args.output)
    model = dict(base.get("model") or {}, path=str(model_dir))
    if (model_dir / "tokenizer_config.json").is_file() or not model.get("tokenizer"):
        model["tokenizer"] = None   # a checkpoint carries its tokenizer
    base.update(model=model, data=dict(base.get("data") or {}, input=args.data,
                                       output=str(out / "data")),
                reference={"enabled": False}, ray={"enabled": False})
    if args.scorer:
        base["rewards"] = {name: {} for name in args.scorer}
    rollout = dict(base.get("rollout") or {})
    if args.max_new_tokens is not None:
        rollout["max_response_length"] = args.max_new_tokens
    if args.temperature > 0:
        rollout["temperature"] = args.temperature
    base["rollout"] = rollout
    cfg = load_config(None, args.overrides, base=base)
    _refuse_code_keys(cfg, taken, recipe)
    return cfg, recipe


def _drop_code_keys(tree: dict[str, Any]) -> dict[str, Any]:
    """Removes ``CODE_KEYS`` from ``tree`` (a recipe read from a checkpoint); returns
    {dotted key: value} for those that were set to something that loads code."""
    taken: dict[str, Any] = {}
    for dotted in CODE_KEYS:
        section, key = dotted.split(".")
        part = tree.get(section)
        if isinstance(part, dict) and key in part:
            part = tree[section] = dict(part)
            value = part.pop(key)
            if value:
                taken[dotted] = value
    return taken


def _refuse_code_keys(cfg: RecipeConfig, taken: dict[str, Any], recipe: str | None) -> None:
    """ConfigError for the first code-loading key the checkpoint's recipe set and the user
    did not: the message says how to pass it on the command line."""
    for dotted, value in taken.items():
        section, key = dotted.split(".")
        if getattr(getattr(cfg, section), key):
            continue                    # the user's own command line set it
        shown = yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
        shown = shown.removesuffix("...").strip()
        hint = shlex.quote(f"{dotted}={shown}")
        if len(hint) > 200 or not hint.isprintable():
            hint = f"{dotted}=..."
        raise ConfigError(f"the checkpoint's recipe sets {dotted}, which loads code; r1zero eval "
                          f"takes no such key from a checkpoint. If you trust it, pass it "
                          f"yourself: r1zero eval ... {hint} (or --config YOUR_RECIPE)",
                          path=recipe, key=dotted)


def _check_args(args: argparse.Namespace) -> int:
    if args.n < 1:
        raise ConfigError(f"--n must be >= 1, got {args.n}")
    if args.temperature < 0 or math.isnan(args.temperature):
        raise ConfigError(f"--temperature must be >= 0, got {args.temperature}")
    if args.max_new_tokens is not None and args.max_new_tokens < 1:
        raise ConfigError(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    n = args.n if args.temperature > 0 else 1
    k = n if args.k is None else args.k
    if not 1 <= k <= n:
        raise ConfigError(f"--k {k} must be between 1 and the {n} samples per problem"
                          + ("" if args.temperature > 0 else " (temperature 0 draws one)"))
    for name in ("limit", "batch_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    return k


def cmd_eval(args: argparse.Namespace) -> int:
    k = _check_args(args)
    model_dir, ckpt_root = resolve_model(args.model)
    if not Path(args.data).exists():
        raise ConfigError("--data: no such file", path=args.data)
    cfg, recipe = eval_config(args, model_dir, ckpt_root)
    summary = evaluate_model(cfg, n=args.n if args.temperature > 0 else 1, k=k,
                             temperature=args.temperature, out_dir=Path(args.output),
                             limit=args.limit, batch_size=args.batch_size)
    summary.update(model=str(model_dir), recipe=recipe, data=str(args.data))
    _write_json(Path(args.output) / "summary.json", summary)
    print(summary_line(summary))
    if summary["n_filtered"]:
        print(f"[eval] {summary['n_filtered']} problems left out: prompt longer than "
              f"rollout.max_prompt_length {cfg.rollout.max_prompt_length}")
    print(f"wrote {Path(args.output) / 'summary.json'} and responses.jsonl")
    return 0


def summary_line(s: dict[str, Any]) -> str:
    k, fmt = s["k"], s["format_rate"]
    fmt_text = "n/a" if fmt is None else f"{fmt:.3f}"
    return (f"[eval] {s['n_problems']} problems: accuracy (greedy) {s['accuracy']:.3f}, "
            f"pass@{k} {s[f'pass@{k}']:.3f}, mean@{k} {s[f'mean@{k}']:.3f} (n={s['n']}), "
            f"format {fmt_text}, response length {s['response_length']:.1f}")


def evaluate_model(cfg: RecipeConfig, n: int, k: int, temperature: float, out_dir: Path,
                   limit: int | None = None, batch_size: int = 32, seed: int = 0) -> dict:
    """Build the backend's engines for ``cfg.model``, answer and score ``cfg.data.input``, write
    ``out_dir/responses.jsonl``; returns the summary."""
    import torch
    from r1zero.data.pipeline import from_config, stop_sequences
    from r1zero.evaluate.problems import load_problems
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    run = from_config(cfg)
    backend = run.backend
    backend.require()
    backend.refuse_unimplemented(cfg)
    check_eval_bounds(cfg, model_arch(cfg), n, batch_size,
                      backend.device_memory() or host_memory())
    backend.setup(cfg)
    tokenizer = AutoTokenizer.from_pretrained(cfg.model.tokenizer or cfg.model.path)
    problems = load_problems(run, limit)
    if not problems.rows:
        raise ConfigError(f"no problems to evaluate (prompts longer than "
                          f"rollout.max_prompt_length: {problems.n_filtered})", path=cfg.data.input)
    engine = backend.make_train_engine(cfg, tokenizer)
    rollout = backend.make_rollout_engine(cfg, engine, tokenizer,
                                          stop_sequences(tokenizer, run.template))
    bar = progress(len(problems.rows), desc="eval", unit="problem",
                   every=max(1, len(problems.rows) // 10))
    with ScoringPool(run.scorers, workers=cfg.scoring.workers,
                     timeout_s=cfg.scoring.timeout_s) as pool:
        answers = answer(rollout, tokenizer, pool, problems.rows, n, temperature,
                         torch.Generator().manual_seed(seed), batch_size, bar.update)
    bar.close()
    write_responses(out_dir / "responses.jsonl", problems, answers)
    summary = summarize(answers, k, problems.sources)
    summary.update(temperature=temperature, n_filtered=problems.n_filtered,
                   template=cfg.template.name, scorers=list(cfg.rewards))
    return summary


def write_responses(path: Path, problems: Any, answers: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for i, row in enumerate(problems.rows):
            head = {"id": row.id, "prompt": problems.prompts[i], "ground_truth": row.ground_truth,
                    "source": problems.sources[i]}
            fh.write(json.dumps({**head, "mode": "greedy", "sample": 0, **answers.greedy[i]},
                                ensure_ascii=False) + "\n")
            samples = answers.samples[i]
            if not (len(samples) == 1 and samples[0] is answers.greedy[i]):
                for j, s in enumerate(samples):
                    fh.write(json.dumps({**head, "mode": "sample", "sample": j, **s},
                                        ensure_ascii=False) + "\n")


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")
