"""Implementations of the CLI subcommands that do real work (imported lazily by ``cli.main``)."""

from __future__ import annotations

import argparse
import json

from r1zero.config.load import load_config
from r1zero.engines.megatron import ckpt_convert as convert
from r1zero.host.errors import ConfigError, R1ZeroError
from r1zero.trainer import launch
from r1zero.trainer.ray_runner import run_on_ray


def cmd_preprocess(args: argparse.Namespace) -> int:
    from r1zero.data.pipeline import from_config, prepare

    cfg = load_config(args.config, args.overrides)
    manifest = prepare(from_config(cfg), force=args.force,
                       skip_bad_rows=True if args.skip_bad_rows else None)
    print(json.dumps(manifest.to_dict(), indent=2, default=str))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from r1zero.trainer.grpo import GRPOTrainer

    cfg = load_config(args.config, args.overrides)
    if cfg.ray.enabled:
        history = run_on_ray(cfg, resume=args.resume)
        if history:
            print(f"done: {len(history)} steps on Ray, reward {history[-1]['reward/mean']:.3f}; "
                  f"metrics in {cfg.logging.dir}/metrics.jsonl")
        return 0
    trainer = GRPOTrainer.from_config(cfg, resume=args.resume)
    try:
        history = trainer.run()
    finally:
        trainer.close()
    if history:
        last = history[-1]
        print(f"done: step {trainer.step}, reward {last['reward/mean']:.3f}; "
              f"metrics in {trainer.writer.path}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from r1zero.engines.state import export_hf

    src, out = Path(args.checkpoint), Path(args.out)
    if not (src / "model" / "config.json").exists():
        raise R1ZeroError(f"{src}: not an r1zero checkpoint (no model/config.json); pass a "
                          "step_<n> directory under checkpoint.dir")
    if out.exists():
        raise R1ZeroError(f"{out}: already exists; export writes a new directory")
    dtype = export_hf(src, out, args.dtype)
    print(f"exported {src} -> {out} ({dtype})")
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    import math

    from r1zero.cli.score import run_score
    from r1zero.host.manager import PluginHost


    options = {}
    for item in args.option:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--option {item!r} must look like key=value")
        options[key] = value
    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"must be >= 1, got {args.workers}", key="--workers")
    if not (math.isfinite(args.timeout) and args.timeout > 0):
        raise ConfigError(f"must be a finite number of seconds > 0, got {args.timeout}",
                          key="--timeout")
    return run_score(args.input, args.scorer or ["base_acc"], options, workers=args.workers,
                     timeout_s=args.timeout, output=args.output, as_json=args.json,
                     host=PluginHost())    # loads on first lookup, with stdout reserved


def _backend_and_config(args: argparse.Namespace):
    from r1zero.host.registry import get_backend, host_for

    cfg = load_config(args.config, args.overrides)
    return get_backend(cfg.backend.name, cfg.backend.plugin, host=host_for(cfg)), cfg


def cmd_plan(args: argparse.Namespace) -> int:
    """Print the layout plan; a plan with failing checks ends in ``r1zero: error:``."""
    backend, cfg = _backend_and_config(args)
    plan = backend.plan(cfg)
    print(json.dumps(plan.to_dict(), indent=2) if args.json else plan.render())
    plan.require()
    return 0


def cmd_launch(args: argparse.Namespace) -> int:
    """Print (or write) the script every node runs to form the Ray cluster and train, after the
    layout plan passes: a recipe that cannot run is refused before any node starts."""
    backend, cfg = _backend_and_config(args)
    backend.validate_layout(cfg)
    script = launch.node_script(backend, cfg, args.config, master_addr=args.master_addr,
                                port=args.port, overrides=args.overrides)
    if args.output:
        from pathlib import Path


        try:
            Path(args.output).write_text(script)
            Path(args.output).chmod(0o755)
        except OSError as exc:
            raise ConfigError(f"cannot write the script: {exc.strerror or exc}",
                              path=args.output, key="--output") from None
        print(f"wrote {args.output}: run it on every node (the one at {args.master_addr} is the head)")
    else:
        print(script, end="")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    """Print the MindSpeed-LLM HF -> mcore command for this recipe's layout (checks FP8 first),
    or with ``--in-process`` convert here with megatron-core (``engines.megatron.convert``)."""
    import shlex


    _, cfg = _backend_and_config(args)
    if getattr(args, "in_process", None):
        from r1zero.engines.megatron import convert as in_process

        run = in_process.hf_to_mcore if args.in_process == "hf-to-mcore" else in_process.mcore_to_hf
        run(cfg, args.load_dir, args.save_dir)
        print(f"wrote {args.save_dir} ({args.in_process})")
        return 0
    if args.check:
        convert.require_bf16(args.load_dir, cfg.model.num_layers or 61)
    cmd = convert.convert_command(cfg, args.load_dir, args.save_dir, dialect=args.dialect,
                                  mtp_num_layers=args.mtp_num_layers,
                                  mindspeed_llm_dir=args.mindspeed_llm_dir)
    print(shlex.join(cmd))
    return 0


def cmd_config_import(args: argparse.Namespace) -> int:
    """Write the recipe; list the keys that were not mapped on stderr."""
    import sys
    from pathlib import Path

    from r1zero.config.mindspeed import import_file

    text, mapped, unmapped = import_file(args.source)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"wrote {args.output}: {len(mapped)} keys mapped, {len(unmapped)} not mapped")
    else:
        print(text, end="")
    for key, why in sorted(unmapped.items()):
        print(f"r1zero: not mapped: {key}: {why}", file=sys.stderr)
    return 0
