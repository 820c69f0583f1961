"""Implementations of the CLI subcommands that do real work (imported lazily by cli.py)."""

from __future__ import annotations

import argparse
import json

from r1zero.config_load import load_config


def cmd_preprocess(args: argparse.Namespace) -> int:
    from r1zero.registry import host_for
    from r1zero.trainer.prompts import run_preprocess

    cfg = load_config(args.config, args.overrides)
    manifest = run_preprocess(cfg, host_for(cfg), force=args.force,
                              skip_bad_rows=True if args.skip_bad_rows else None)
    data = manifest if isinstance(manifest, dict) else getattr(manifest, "__dict__", manifest)
    try:
        print(json.dumps(data, indent=2, default=str))
    except TypeError:
        print(data)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from r1zero.trainer.grpo import GRPOTrainer

    cfg = load_config(args.config, args.overrides)
    trainer = GRPOTrainer(cfg, resume=args.resume)
    try:
        history = trainer.run()
    finally:
        trainer.close()
    if history:
        last = history[-1]
        print(f"done: step {trainer.step}, reward {last['reward/mean']:.3f}; "
              f"metrics in {trainer.writer.path}")
    return 0
