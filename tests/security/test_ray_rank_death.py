"""Issue 21 item 8: one Ray rank killed with SIGKILL is reported as "rank N (pid P) died:
SIGKILL; resume with --resume", not a raw Ray traceback (which names no rank and guesses at
causes). Two real Ray ranks on a tiny model; rank 1 is killed while both run a task."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

import pytest
import ray

from r1zero.config.load import load_config
from r1zero.host.errors import R1ZeroError
from tests.trainer.conftest import tiny_setup  # noqa: F401 - fixture
from tests.trainer.test_ray_runner import SECTIONS, _dp_recipe


def _wait(trainer, seconds):
    """Runs inside a Ray rank (pickled by value)."""
    import time as t

    t.sleep(seconds)
    return trainer.step


@pytest.mark.parametrize("sig,why", [(signal.SIGKILL, "SIGKILL"),
                                     (signal.SIGSEGV, "Segmentation fault")])
def test_a_killed_rank_is_named_with_its_pid_and_the_signal(tiny_setup, tmp_path, sig, why):  # noqa: F811
    from ray import cloudpickle

    from r1zero.data.pipeline import from_config, prepare
    from r1zero.trainer.ray_runner import WorkerGroup

    cfg = load_config(None, base=_dp_recipe(tiny_setup, tmp_path, **SECTIONS))
    resolved = from_config(cfg)
    prepare(resolved)
    ray.init(num_cpus=2, address="local", include_dashboard=False, logging_level="ERROR")
    try:
        group = WorkerGroup(cfg, resolved.backend)
        try:
            pid = group.pids[1]
            threading.Timer(3.0, os.kill, (pid, sig)).start()
            cloudpickle.register_pickle_by_value(sys.modules[__name__])
            t = time.perf_counter()
            with pytest.raises(R1ZeroError) as err:
                group.apply(_wait, [(60,), (60,)])
            assert time.perf_counter() - t < 45          # not after rank 0's 60 s
        finally:
            cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
            group.close()
    finally:
        ray.shutdown()
    assert str(err.value) == f"rank 1 (pid {pid}) died: {why}; resume with --resume"
