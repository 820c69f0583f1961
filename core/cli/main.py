"""The ``r1zero`` command line.

    r1zero demo                                   # build the tiny base model, run GRPO, plot
    r1zero plugins [--json]
    r1zero plugin new KIND NAME [--dir D]          # KIND: templates|datasets|rewards|backends|algorithms
    r1zero config show CONFIG [key=value ...]
    r1zero config import MINDSPEED_YAML [--output RECIPE]
    r1zero preprocess CONFIG [key=value ...] [--skip-bad-rows] [--force]
    r1zero train CONFIG [key=value ...] [--resume]
    r1zero plan CONFIG [key=value ...] [--json]    # layout and per-die memory, no hardware needed
    r1zero score FILE.jsonl [--scorer base_acc] [--option k=v]
    r1zero eval MODEL_OR_CHECKPOINT --data FILE [--n K] [--k K] [--temperature T] [key=value ...]
    r1zero launch CONFIG --master-addr IP [--output FILE]   # the per-node Ray cluster script
    r1zero convert CONFIG --load-dir HF --save-dir MG [--in-process hf-to-mcore|mcore-to-hf]
    r1zero export CHECKPOINT OUT [--dtype D]      # fp32 master weights -> an HF model directory
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Sequence

from r1zero.host.errors import R1ZeroError


def _cmd_plugins(args: argparse.Namespace) -> int:
    from r1zero.host.manager import KINDS, get_host

    host = get_host()
    for kind in KINDS:      # collect all registrations so failures in hooks show up too
        host.items(kind)
    rows = [{"name": p.name, "module": p.module, "distribution": p.distribution,
             "version": p.version, "source": p.source, "registered": p.registered,
             "disabled": p.disabled, "error": p.error} for p in host.plugins.values()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        dist = f"{r['distribution']} {r['version']}" if r["distribution"] else "-"
        print(f"{r['name']}  [{r['source']}; {dist}; {r['module']}]")
        for kind, names in r["registered"].items():
            print(f"    {kind}: {', '.join(names)}")
        if r["disabled"]:
            print("    disabled")
        if r["error"]:
            print(f"    FAILED: {r['error']}")
    failed = sum(1 for r in rows if r["error"])
    print(f"{len(rows)} plugins, {failed} failed to load")
    return 0


def _cmd_config_show(args: argparse.Namespace) -> int:
    from r1zero.config.load import dump_yaml, load_config

    print(dump_yaml(load_config(args.config, args.overrides)), end="")
    return 0


def _lazy(module: str, func: str):
    def run(args: argparse.Namespace) -> int:
        import importlib

        return getattr(importlib.import_module(module), func)(args)
    return run


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="r1zero", description=__doc__.split("\n")[0] if __doc__ else "")
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)

    sp = sub.add_parser("plugins", help="list plugins, what they registered, and failures")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=_cmd_plugins)

    sp = sub.add_parser("plugin", help="plugin authoring tools")
    psub = sp.add_subparsers(dest="plugin_command", required=True)
    new = psub.add_parser("new", help="write a ready-to-install plugin package with a test")
    new.add_argument("kind", choices=["templates", "datasets", "rewards", "backends", "algorithms"])
    new.add_argument("name", help="registered name, e.g. my_reward -> package r1zero-my-reward")
    new.add_argument("--dir", default=".", help="folder to create the package in (default: .)")
    new.set_defaults(func=_lazy("r1zero.cli.scaffold", "cmd_plugin_new"))

    sp = sub.add_parser("config", help="config tools")
    csub = sp.add_subparsers(dest="config_command", required=True)
    show = csub.add_parser("show", help="print the resolved config")
    show.add_argument("config")
    show.add_argument("overrides", nargs="*", help="dotted overrides, e.g. actor.lr=1e-6")
    show.set_defaults(func=_cmd_config_show)
    imp = csub.add_parser("import", help="MindSpeed-RL GRPO config -> r1zero recipe "
                                         "(names every key it could not map)")
    imp.add_argument("source", help="a MindSpeed-RL config, e.g. configs/grpo_qwen25_7b_A3.yaml")
    imp.add_argument("--output", default=None, help="recipe file to write (default: stdout)")
    imp.set_defaults(func=_lazy("r1zero.cli.commands", "cmd_config_import"))

    sp = sub.add_parser("preprocess", help="handler -> template -> tokenizer -> dataset on disk")
    sp.add_argument("config")
    sp.add_argument("overrides", nargs="*")
    sp.add_argument("--skip-bad-rows", action="store_true")
    sp.add_argument("--force", action="store_true")
    sp.set_defaults(func=_lazy("r1zero.cli.commands", "cmd_preprocess"))

    sp = sub.add_parser("demo", help="build a tiny base model and watch GRPO teach it the R1 format")
    sp.add_argument("overrides", nargs="*", help="dotted overrides of the demo recipe")
    sp.add_argument("--out", default="runs/demo")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--pretrain-steps", type=int, default=None,
                    help="base-model pretraining steps (default: the builder's; fewer = a weaker model)")
    sp.set_defaults(func=_lazy("r1zero.demo.run", "run_demo"))

    sp = sub.add_parser("score", help="score (response, ground_truth) rows with registered scorers")
    sp.add_argument("input", help="jsonl with 'response' and 'ground_truth' (or 'gold')")
    sp.add_argument("--scorer", action="append", help="scorer name (repeatable); default base_acc")
    sp.add_argument("--option", action="append", default=[], help="scorer option key=value")
    sp.add_argument("--workers", type=int, default=None)
    sp.add_argument("--timeout", type=float, default=5.0, help="per-sample seconds")
    sp.add_argument("--output", default=None, help="per-row results file (default stdout)")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=_lazy("r1zero.cli.commands", "cmd_score"))

    sp = sub.add_parser("plan", help="the recipe's parallel layout and per-die memory; "
                        "every failing check with its numbers (no hardware needed)")
    sp.add_argument("config")
    sp.add_argument("overrides", nargs="*")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=_lazy("r1zero.cli.commands", "cmd_plan"))

    sp = sub.add_parser("eval", help="greedy accuracy, pass@k and mean@k of a model on a problem file")
    sp.add_argument("model", help="HF model dir, r1zero checkpoint step_* dir, or checkpoint dir")
    sp.add_argument("--data", required=True, help="problems (any format the data handler reads)")
    sp.add_argument("--n", type=int, default=8, help="samples per problem for pass@k (default 8)")
    sp.add_argument("--k", type=int, default=None, help="k of pass@k / mean@k (default: n)")
    sp.add_argument("--temperature", type=float, default=1.0,
                    help="sampling temperature (0: greedy only, n = 1)")
    sp.add_argument("--max-new-tokens", type=int, default=None,
                    help="default: the recipe's rollout.max_response_length")
    sp.add_argument("--output", default="runs/eval", help="writes responses.jsonl, summary.json")
    sp.add_argument("--config", default=None,
                    help="recipe (default: recipe.yaml beside the checkpoints, else defaults)")
    sp.add_argument("--scorer", action="append", help="scorer name (repeatable); default: the recipe's")
    sp.add_argument("--limit", type=int, default=None, help="first N problems only")
    sp.add_argument("--batch-size", type=int, default=32, help="prompts per generate call")
    sp.add_argument("overrides", nargs="*", help="dotted overrides, e.g. template.name=qwen_r1")
    sp.set_defaults(func=_lazy("r1zero.cli.eval", "cmd_eval"))

    sp = sub.add_parser("launch", help="write the per-node script that forms the Ray cluster and trains")
    sp.add_argument("config")
    sp.add_argument("overrides", nargs="*")
    sp.add_argument("--master-addr", required=True)
    sp.add_argument("--port", type=int, default=6766)
    sp.add_argument("--output", default=None)
    sp.set_defaults(func=_lazy("r1zero.cli.commands", "cmd_launch"))

    sp = sub.add_parser("convert", help="HF -> Megatron-mcore conversion command for the recipe's layout")
    sp.add_argument("config")
    sp.add_argument("overrides", nargs="*")
    sp.add_argument("--load-dir", required=True)
    sp.add_argument("--save-dir", required=True)
    sp.add_argument("--dialect", default="v2", choices=["v2", "deepseek3"])
    sp.add_argument("--mtp-num-layers", type=int, default=0)
    sp.add_argument("--mindspeed-llm-dir", default=None)
    sp.add_argument("--check", action="store_true", help="refuse FP8 weights (dequantise first)")
    sp.add_argument("--in-process", choices=["hf-to-mcore", "mcore-to-hf"], default=None,
                    help="convert here with megatron-core at the recipe's actor layout (dense "
                         "Llama/Qwen2; run under torchrun with one process per rank) instead of "
                         "printing the MindSpeed-LLM command")
    sp.set_defaults(func=_lazy("r1zero.cli.commands", "cmd_convert"))

    sp = sub.add_parser("train", help="run GRPO (in-process; Ray when ray.enabled)")
    sp.add_argument("config")
    sp.add_argument("overrides", nargs="*")
    sp.add_argument("--resume", action="store_true", help="continue from the latest checkpoint")
    sp.set_defaults(func=_lazy("r1zero.cli.commands", "cmd_train"))

    sp = sub.add_parser("export", help="a checkpoint's fp32 master weights -> an HF model directory")
    sp.add_argument("checkpoint", help="a checkpoint directory (runs/checkpoints/step_000050)")
    sp.add_argument("out", help="new directory for the HF model (must not exist)")
    sp.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default=None,
                    help="weights dtype (default: the run's model.dtype)")
    sp.set_defaults(func=_lazy("r1zero.cli.commands", "cmd_export"))
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:   # ``train cfg --resume k=v``: overrides may follow the flags
        if not hasattr(args, "overrides") or any(e.startswith("-") or "=" not in e for e in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = [*args.overrides, *extra]
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except R1ZeroError as exc:
        print(f"r1zero: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
