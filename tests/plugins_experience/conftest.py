"""Fixtures of the plugin authors' experience tests: the example plugin packages pip-installed
into this environment, and a tiny model + tokenizer + dataset to train on (built here, in
seconds, nothing downloaded)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import attrs
import pytest

from tests.tiny_qwen2 import save_tiny_qwen2
from tests.plugins_experience.installing import EXAMPLES, ensure_installed, install_to

EXAMPLE_DIRS = [EXAMPLES / "r1zero-length-reward", EXAMPLES / "r1zero-template-example",
                EXAMPLES / "r1zero-cpu-alias", EXAMPLES / "r1zero-cispo"]
# `r1zero plugin new KIND NAME` for every kind
SCAFFOLDED = {"rewards": "my_reward", "templates": "my_template", "datasets": "my_dataset",
              "backends": "my_backend", "algorithms": "my_algorithm"}


@pytest.fixture(scope="session")
def examples_installed() -> list[Path]:
    """The example packages, installed editable (skipped if already installed from here)."""
    ensure_installed(EXAMPLE_DIRS)
    return EXAMPLE_DIRS


@attrs.frozen
class AuthorRun:
    cli_output: str               # what `r1zero plugin new ...` printed, for every kind
    packages: dict[str, Path]     # kind -> generated package folder
    site: Path                    # where the generated packages were pip-installed (--target)
    outcomes: dict[str, list[str]]  # test file name -> ["PASSED", ...] of the pytest run
    pytest_output: str


@pytest.fixture(scope="session")
def author_run(tmp_path_factory, examples_installed) -> AuthorRun:
    """What plugin authors do, once for all packages: generate a package of every kind with
    the CLI, pip-install them, then run the generated tests and the example packages' tests
    (`python -m pytest` over their folders, in one process to pay its start-up once)."""
    from r1zero.cli.main import main
    from r1zero.cli.scaffold import Names

    root = tmp_path_factory.mktemp("author")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for kind, name in SCAFFOLDED.items():
            assert main(["plugin", "new", kind, name, "--dir", str(root / "src")]) == 0
    packages = {k: root / "src" / Names.of(k, n).dist for k, n in SCAFFOLDED.items()}
    site = install_to(list(packages.values()), root / "site")
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider",
                           *map(str, [*packages.values(), *examples_installed])],
                          capture_output=True, text=True, env=env, cwd=root)
    outcomes: dict[str, list[str]] = {}
    for status, file in re.findall(r"^(PASSED|FAILED|ERROR) \S*?([\w.-]+\.py)", proc.stdout, re.M):
        outcomes.setdefault(file, []).append(status)
    return AuthorRun(out.getvalue(), packages, site, outcomes, proc.stdout + proc.stderr)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A folder with ``model/`` (a 2-layer Qwen2, hidden 64, and its tokenizer) and
    ``data.jsonl`` (16 demo arithmetic records in DeepScaleR's shape)."""
    from r1zero.demo.arith import demo_records
    from r1zero.demo.tokenizer import train_tokenizer
    from r1zero.plugins.templates.r1 import R1_INSTRUCTION

    root = tmp_path_factory.mktemp("tiny_run")
    records = demo_records(16, seed=0)
    (root / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    texts = [r["problem"] + " " + r["solution"] for r in records] * 4 + [R1_INSTRUCTION] * 8
    tok = train_tokenizer(texts, 400, root / "model")
    save_tiny_qwen2(tok, root / "model", max_positions=512)
    return root


@pytest.fixture
def write_recipe(tiny_run, tmp_path):
    """``write_recipe(**sections) -> path`` of a tiny recipe YAML in ``tmp_path``."""
    return lambda **sections: recipe(tiny_run, tmp_path, **sections)


def recipe(run: Path, out: Path, **sections: dict) -> Path:
    """Write a tiny recipe YAML in ``out`` (2 prompts x 2 samples, 16-token responses, 2 steps)
    with ``sections`` replacing whole top-level sections; returns its path."""
    import yaml

    cfg = {
        "name": "plugins_experience",
        "model": {"path": str(run / "model"), "dtype": "float32"},
        "data": {"input": str(run / "data.jsonl"), "output": str(out / "prep"), "workers": 1},
        "rollout": {"n_samples_per_prompt": 2, "max_prompt_length": 512,
                    "max_response_length": 16},
        "actor": {"lr": 1.0e-3, "global_batch_size": 2, "micro_batch_size": 4, "train_iters": 2},
        "scoring": {"workers": 1},
        "checkpoint": {"dir": str(out / "ckpt"), "save_interval": 0, "keep_last": 1},
        "logging": {"dir": str(out / "logs"), "progress": False, "tensorboard": False},
        **sections,
    }
    path = out / "recipe.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path
