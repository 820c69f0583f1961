"""The scoring pool: real worker processes, real kills. Misbehaving scorers are defined at
module level so the workers can unpickle them; timeouts are short (0.5 s) to keep this fast."""

from __future__ import annotations

import ctypes
import logging
import os
import re
import time

import pytest

from r1zero.host.errors import ScoringError
from r1zero.scoring.pool import ScoreBatch, Scorer, ScoringPool
from r1zero.scoring.workers import check_result

TIMEOUT = 0.5


class Echo:
    """reward = float(response) if it parses, with a 'half' component; hostile-input aware."""
    name, components, in_process, in_process_reason = "echo", ("half",), False, ""

    def score(self, response, ground_truth, extra):
        if response == "hang":
            time.sleep(60)
        if response == "spin":                        # catastrophic backtracking in C, GIL held
            re.match(r"(a+)+$", "a" * 40 + "b")
        if response == "exit":
            os._exit(3)
        if response == "segv":
            ctypes.string_at(0)
        if response == "raise":
            raise RuntimeError("scorer bug")
        if response == "nan":
            return {"reward": float("nan"), "half": 0.0}
        if response == "text":
            return {"reward": "1.0", "half": 0.5}
        if response == "nohalf":
            return {"reward": 1.0}
        if response == "list":
            return [1.0]
        value = float(response) * extra.get("scale", 1)
        return {"reward": value, "half": value / 2}


class Ones:
    name, components, in_process = "ones", (), True
    in_process_reason = "constant, pure and trivially cheap"

    def score(self, response, ground_truth, extra):
        return {"reward": 1.0}


@pytest.fixture(scope="module")
def pool():
    with ScoringPool([(Echo(), 1.0), (Ones(), 0.5)], workers=2, timeout_s=TIMEOUT,
                     chunk_size=4) as p:
        yield p


def test_protocol_and_combined_rewards(pool):
    assert isinstance(Echo(), Scorer)
    b = pool.score(["1", "2", "0.5"], ["g"] * 3, [{}, {"scale": 3}, {}])
    assert isinstance(b, ScoreBatch)
    # rewards = 1.0 * echo + 0.5 * ones: 1+.5, 6+.5, .5+.5
    assert b.rewards == [1.5, 6.5, 1.0]
    assert b.components == {"echo/reward": [1.0, 6.0, 0.5], "echo/half": [0.5, 3.0, 0.25],
                            "ones/reward": [1.0, 1.0, 1.0]}
    assert b.counts["reward/timeouts"] == 0 and b.counts["reward/errors"] == 0 and not b.errors


def test_many_samples_keep_their_order(pool):
    values = [str(i) for i in range(200)]
    assert pool.score(values, ["g"] * 200).components["echo/reward"] == list(map(float, range(200)))


@pytest.mark.parametrize("bad", ["hang", "spin"])
def test_hanging_scorer_is_killed_and_the_batch_completes(pool, bad, caplog):
    before = pool.workers_replaced
    t = time.perf_counter()
    with caplog.at_level(logging.WARNING, logger="r1zero"):
        b = pool.score(["1", bad, "3", "4"], ["g"] * 4)
    assert time.perf_counter() - t < TIMEOUT + 3
    assert b.components["echo/reward"] == [1.0, 0.0, 3.0, 4.0]
    assert b.components["echo/half"][1] == 0.0
    assert b.rewards == [1.5, 0.5, 3.5, 4.5]           # the in-process scorer still counts
    assert b.counts["reward/timeouts"] == 1 and b.counts["reward/echo/timeouts"] == 1
    assert "'echo' sample 1: timeout" in b.errors[0]
    assert "'echo'" in caplog.text and "timed out" in caplog.text
    assert pool.workers_replaced == before + 1


@pytest.mark.parametrize("bad,why", [("exit", "exit code 3"), ("segv", "exit code -11"),
                                     ("raise", "RuntimeError: scorer bug")])
def test_crashing_or_raising_scorer_is_an_error_for_that_sample(pool, bad, why):
    b = pool.score([bad, "2", bad, "5"], ["g"] * 4)
    assert b.components["echo/reward"] == [0.0, 2.0, 0.0, 5.0]
    assert b.counts["reward/errors"] == 2 and b.counts["reward/timeouts"] == 0
    assert all(why in e and "'echo'" in e for e in b.errors)
    assert [e.split(":")[0] for e in b.errors] == ["reward scorer 'echo' sample 0",
                                                   "reward scorer 'echo' sample 2"]


@pytest.mark.parametrize("bad,why", [("nan", "reward=nan"), ("text", "reward='1.0'"),
                                     ("nohalf", "no 'half'"), ("list", "returned list")])
def test_garbage_results_are_errors_naming_the_scorer(pool, bad, why):
    b = pool.score([bad, "1"], ["g", "g"])
    assert b.components["echo/reward"] == [0.0, 1.0] and b.counts["reward/errors"] == 1
    assert why in b.errors[0] and "reward scorer 'echo'" in b.errors[0]


def test_pool_survives_everything_in_one_batch(pool):
    mix = ["hang", "exit", "1", "segv", "raise", "spin", "2", "nan"] * 2
    b = pool.score(mix, ["g"] * len(mix))
    assert b.counts["reward/timeouts"] == 4 and b.counts["reward/errors"] == 8
    assert b.components["echo/reward"][2] == 1.0 and b.components["echo/reward"][14] == 2.0
    assert pool.score(["7"], ["g"]).rewards == [7.5]        # and keeps working afterwards


def test_a_worker_killed_between_calls_is_replaced_without_blame(pool):
    import signal
    os.kill(pool._workers.workers[0].proc.pid, signal.SIGKILL)
    pool._workers.workers[0].proc.join(5)
    b = pool.score(["1", "2", "3"], ["g"] * 3)
    assert b.components["echo/reward"] == [1.0, 2.0, 3.0] and not b.errors


def test_small_calls_are_cheap(pool):
    pool.score(["1"], ["g"])
    t = time.perf_counter()
    for _ in range(20):
        pool.score(["1", "2"], ["g", "g"])
    assert (time.perf_counter() - t) / 20 < 0.05


def test_hostile_math_through_base_acc_in_workers(tmp_path):
    from r1zero.plugins.rewards.base_acc import BaseAccScorer
    marker = tmp_path / "pwned"
    answers = [f"__import__('os').system('touch {marker}')", "9**9**9**9",
               "10^{10^{10^{10}}}", "(" * 5000 + ")" * 5000, "1\x00", "\ud800", "x" * 200_000]
    responses = [f"<think>t</think><answer>\\boxed{{{a}}}</answer>" for a in answers]
    with ScoringPool([(BaseAccScorer(), 1.0)], workers=2, timeout_s=5.0) as p:
        t = time.perf_counter()
        b = p.score(responses + [responses[0]], ["1"] * len(answers) + [answers[0]])
        assert time.perf_counter() - t < 10
    assert b.counts == {"reward/timeouts": 0, "reward/errors": 0,
                        "reward/base_acc/timeouts": 0, "reward/base_acc/errors": 0}
    assert b.components["base_acc/format"] == [1.0] * (len(answers) + 1)
    # "1\x00" is "1" once the NUL is dropped; the exec string equals itself as a string only
    assert b.rewards == [0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0]
    assert not marker.exists() and not os.path.exists("/tmp/pwned")


def test_check_result():
    assert check_result("s", ("a",), {"reward": True, "a": 2}) == {"reward": 1.0, "a": 2.0}
    with pytest.raises(ScoringError, match="'s' returned reward=inf"):
        check_result("s", (), {"reward": float("inf")})


class BreaksInWorkers:
    """Pickles fine here, fails to unpickle in any other process."""
    name, components, in_process, in_process_reason = "fragile", (), False, ""

    def __init__(self):
        self.pid = os.getpid()

    def __setstate__(self, state):
        if state["pid"] != os.getpid():
            raise RuntimeError("cannot be loaded in a worker")
        self.__dict__.update(state)

    def score(self, response, ground_truth, extra):
        return {"reward": 0.0}


class Unimportable(BreaksInWorkers):
    name = "local"


def test_bad_configuration_is_reported():
    with pytest.raises(ValueError, match="listed twice"):
        ScoringPool([(Echo(), 1.0), (Echo(), 1.0)], workers=1)
    with pytest.raises(ValueError, match="in_process_reason"):
        bad = Ones()
        bad.in_process_reason = ""
        ScoringPool([(bad, 1.0)])
    with pytest.raises(ValueError, match="3 ground truths"):
        ScoringPool([(Ones(), 1.0)]).score(["a"], ["1", "2", "3"])
    with pytest.raises(ScoringError, match="before it was ready.*'fragile'"):
        ScoringPool([(BreaksInWorkers(), 1.0)], workers=1)
    Unimportable.__module__ = "no_such_module_here"
    try:
        with pytest.raises(ScoringError, match=r"\['local'\] cannot be sent to worker"):
            ScoringPool([(Unimportable(), 1.0)], workers=1)
    finally:
        Unimportable.__module__ = __name__


def test_in_process_scorers_need_no_workers():
    with ScoringPool([(Ones(), 2.0)]) as p:
        assert p._workers is None
        assert p.score(["a", "b"], ["1", "2"]).rewards == [2.0, 2.0]
