"""A tiny end-to-end setup: a random Qwen2 model, the shared tiny tokenizer, demo problems."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.tiny_qwen2 import save_tiny_qwen2


@pytest.fixture(scope="session")
def tiny_setup(tmp_path_factory, tiny_tokenizer):
    from transformers import AutoTokenizer

    from r1zero.demo.arith import demo_records

    root = tmp_path_factory.mktemp("tiny_run")
    tok = AutoTokenizer.from_pretrained(tiny_tokenizer)
    model_dir = save_tiny_qwen2(tok, root / "model", max_positions=256)
    tok.save_pretrained(model_dir)
    data = root / "problems.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in demo_records(24, seed=3)))
    return {"root": root, "model": model_dir, "data": data}


def recipe(setup: dict, run_dir, **sections) -> dict:
    """A base config dict for a tiny run under ``run_dir``; ``sections`` update it."""
    base = {
        "name": "tiny",
        "model": {"path": str(setup["model"]), "dtype": "float32"},
        "data": {"input": str(setup["data"]), "output": str(setup["root"] / "prep"), "workers": 1},
        "template": {"name": "r1_demo"},
        "rewards": {"base_acc": {"weight": 1.0, "options": {"format_weight": 0.5}}},
        "scoring": {"workers": 1, "timeout_s": 5.0},
        "backend": {"name": "cpu", "num_threads": 1},
        "rollout": {"n_samples_per_prompt": 4, "max_prompt_length": 128, "max_response_length": 12},
        "actor": {"lr": 1.0e-3, "global_batch_size": 2, "micro_batch_size": 8, "train_iters": 4},
        "checkpoint": {"dir": str(run_dir / "ckpt"), "save_interval": 1, "keep_last": 2},
        "logging": {"dir": str(run_dir / "logs"), "progress": False, "tensorboard": True},
    }
    for key, value in sections.items():
        base[key] = {**base.get(key, {}), **value}
    return base


def write_recipe(path, cfg: dict):
    path.write_text(yaml.safe_dump(cfg))
    return path


def kill_inside_step(proc, metrics, logged: int = 2, timeout_s: float = 400,
                     saved=None) -> int:
    """SIGKILL ``proc``'s process group (driver, Ray, ranks) as soon as ``metrics`` holds
    ``logged`` steps (and the file ``saved``, when given, exists), i.e. inside the next step;
    returns the steps logged by then."""
    import os
    import signal
    import time

    from r1zero.trainer.metrics import read_metrics

    deadline = time.time() + timeout_s
    while time.time() < deadline and proc.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= logged \
                and (saved is None or saved.exists()):
            break
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    return len(read_metrics(metrics))


def random_groups(samples: int, min_len: int, max_len: int, seed: int):
    """4 prompts (lengths 6..9) x ``samples`` random responses of ``min_len`` to ``max_len - 1``
    tokens, as (prompt_ids, response_ids) pairs, and one random advantage per sequence."""
    import torch

    g = torch.Generator().manual_seed(seed)
    out = []
    for p in range(4):
        prompt = torch.randint(5, 300, (6 + p,), generator=g).tolist()
        for _ in range(samples):
            n = int(torch.randint(min_len, max_len, (1,), generator=g))
            out.append((prompt, torch.randint(5, 300, (n,), generator=g).tolist()))
    return out, torch.randn(4 * samples, generator=g)
