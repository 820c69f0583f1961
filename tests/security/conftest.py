"""Attack tests of issue 13: each feeds r1zero a hostile input and checks what happens.

The tiny end-to-end setup (random Qwen2, tiny tokenizer, demo problems) is shared with the
trainer tests.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from tests.trainer.conftest import recipe, tiny_setup, write_recipe  # noqa: F401 - fixture


@pytest.fixture(scope="module")
def trained(tiny_setup, tmp_path_factory):  # noqa: F811 - the imported fixture
    """A real 2-step run with a checkpoint after each step: (config dict, run dir)."""
    from r1zero.config.load import load_config
    from r1zero.trainer.grpo import GRPOTrainer

    run = tmp_path_factory.mktemp("trained")
    cfg = recipe(tiny_setup, run, actor={"train_iters": 2}, checkpoint={"keep_last": 3},
                 logging={"plots": False, "tensorboard": False})
    trainer = GRPOTrainer.from_config(load_config(None, base=cfg))
    try:
        trainer.run()
    finally:
        trainer.close()
    return cfg, run


def cli(*args: str, cwd=None, timeout: float = 240, stdin: str | None = None):
    """``python -m r1zero.cli.main ARGS`` -> CompletedProcess (text, both streams captured)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "r1zero.cli", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=cwd, env=env, input=stdin)


def main_(capsys, *args: str) -> subprocess.CompletedProcess:
    """``r1zero ARGS`` in this process (``r1zero.cli.main.main``), streams captured."""
    from r1zero.cli.main import main

    capsys.readouterr()
    try:
        rc = main(list(args))
    except SystemExit as exc:       # argparse's own usage errors
        rc = exc.code
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(list(args), rc, out, err)


def dead_pid() -> int:
    """The pid of a process that has exited."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def assert_user_error(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    """The command failed with one ``r1zero: error: ...`` line naming ``fragments``, no traceback."""
    err = proc.stderr
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-2000:], err[-4000:])
    assert "Traceback" not in err, err[-4000:]
    line = [ln for ln in err.splitlines() if ln.startswith("r1zero: error:")]
    assert line, err[-4000:]
    for frag in fragments:
        assert frag in line[-1], (frag, line[-1])
    return line[-1]


@pytest.fixture
def run(trained, tmp_path):
    """A private copy of the trained run: (config dict pointing at it, its checkpoint dir)."""
    cfg, src = trained
    shutil.copytree(src / "ckpt", tmp_path / "ckpt")
    cfg = {**cfg, "checkpoint": {**cfg["checkpoint"], "dir": str(tmp_path / "ckpt")},
           "logging": {**cfg["logging"], "dir": str(tmp_path / "logs")}}
    return cfg, tmp_path / "ckpt"


def resume(cfg: dict, caplog) -> int:
    """``--resume`` the run of config dict ``cfg`` with its warnings captured in ``caplog``; the
    step it resumed at."""
    import logging

    from r1zero.config.load import load_config
    from r1zero.trainer.grpo import GRPOTrainer

    with caplog.at_level(logging.WARNING, logger="r1zero.trainer"):
        trainer = GRPOTrainer.from_config(load_config(None, base=cfg), resume=True)
    trainer.close()
    return trainer.step
