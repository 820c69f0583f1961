"""Worker processes for reward scoring: per-task wall-clock timeouts by kill-and-replace.

``WorkerSet(scorers, workers, timeout_s, chunk_size).run(tasks)`` scores a list of
``Task(task_id, scorer_index, response, ground_truth, extra)`` and returns one ``Outcome``
per task: ``("ok", {"reward": …, <component>: …})``, ``("error", message)`` or
``("timeout", message)``. The batch always completes.

- Workers are forked by multiprocessing's *forkserver*: a fresh interpreter that imported
  the scorers' modules once (``preload``), so a worker starts in milliseconds and never
  inherits the trainer's threads (forking a process that runs torch threads can deadlock).
- The parent sends tasks in chunks; a worker answers each task as soon as it is done, so
  the parent knows when the task at the head of a worker's queue started. One that runs
  past ``timeout_s`` gets its worker SIGKILLed and replaced; the rest of that worker's chunk
  goes back to the queue. No signals are delivered to scorer code and nothing depends on
  the scorer cooperating: a C extension stuck holding the GIL is killed the same way.
- A worker that dies (segfault, ``os._exit``, OOM kill) costs the task it was running an
  error naming the exit code, and is replaced the same way.
"""

from __future__ import annotations

import collections
import logging
import math
import multiprocessing as mp
import os
import pickle
import time
from multiprocessing.connection import Connection, wait
from typing import Any, Mapping, NamedTuple, Sequence

from r1zero.host.errors import ScoringError

log = logging.getLogger(__name__)
START_TIMEOUT_S = 120.0      # a fresh worker must report ready within this


class Task(NamedTuple):
    task_id: int
    scorer: int                  # index into the scorer list
    response: str
    ground_truth: str
    extra: Mapping[str, Any]


class Outcome(NamedTuple):
    status: str                  # "ok" | "error" | "timeout"
    value: Any                   # dict of floats when ok, else a message


def check_result(name: str, components: Sequence[str], result: Any) -> dict[str, float]:
    """A scorer's return value as ``{"reward": float, <component>: float}``, or ScoringError."""
    if not isinstance(result, Mapping):
        raise ScoringError(f"reward scorer {name!r} returned {type(result).__name__}, "
                           f"expected a dict with 'reward' and {list(components)}")
    out: dict[str, float] = {}
    for key in ("reward", *components):
        if key not in result:
            raise ScoringError(f"reward scorer {name!r} returned no {key!r} "
                               f"(keys: {sorted(map(str, result))})")
        value = result[key]
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ScoringError(f"reward scorer {name!r} returned {key}={value!r}; "
                               f"expected a finite number")
        out[key] = float(value)
    return out


def _load_module_files(module_files: Sequence[tuple[str, str]]) -> None:
    """Re-create modules that were loaded from a file path (local plugins), by name."""
    import importlib.util
    import sys
    for name, path in module_files:
        if name not in sys.modules:
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)


def _file_modules(scorers: Sequence[Any]) -> list[tuple[str, str]]:
    """(name, path) of scorer modules that cannot be imported by name (loaded from a file,
    like ``R1ZERO_PLUGINS=my_reward.py``); workers load them from the path before unpickling."""
    import importlib.machinery
    import sys
    out = []
    for name in sorted({type(s).__module__ for s in scorers} - {"__main__"}):
        path = getattr(sys.modules.get(name), "__file__", None)
        if path and "." not in name and \
                importlib.machinery.PathFinder.find_spec(name, sys.path) is None:
            out.append((name, path))
    return out


def _worker_main(conn: Connection, blob: bytes, module_files: Sequence[tuple[str, str]]) -> None:
    """Loop of one worker process: receive chunks of tasks, answer each task."""
    _load_module_files(module_files)
    scorers = pickle.loads(blob)
    conn.send(("ready", os.getpid()))
    while True:
        try:
            chunk = conn.recv()
        except EOFError:
            return
        if chunk is None:
            return
        for task in chunk:
            scorer = scorers[task.scorer]
            try:
                raw = scorer.score(task.response, task.ground_truth, task.extra)
                reply = Outcome("ok", check_result(scorer.name, scorer.components, raw))
            except BaseException as exc:  # noqa: BLE001 - a scorer's failure is data here
                reply = Outcome("error", f"{type(exc).__name__}: {exc}"[:2000])
            conn.send((task.task_id, reply))


class _Worker:
    def __init__(self, ctx: Any, blob: bytes, module_files: Sequence[tuple[str, str]]):
        self.conn, child = ctx.Pipe(duplex=True)
        self.proc = ctx.Process(target=_worker_main, args=(child, blob, module_files),
                                daemon=True, name="r1zero-scoring-worker")
        self.proc.start()
        child.close()
        self.ready = False
        self.inflight: collections.deque[Task] = collections.deque()
        self.since = time.monotonic()        # start of the head task (or of the process)

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(timeout=5)
        self.conn.close()


class WorkerSet:
    """A fixed number of scoring worker processes; ``run`` is not thread-safe."""

    def __init__(self, scorers: list, workers: int, timeout_s: float, chunk_size: int,
                 preload: Sequence[str] = ()):
        self.scorers, self.timeout_s, self.chunk_size = scorers, timeout_s, chunk_size
        self.module_files = _file_modules(scorers)
        self.ctx = mp.get_context("forkserver")
        self.ctx.set_forkserver_preload(["r1zero.scoring.workers", *preload])
        self.pending: collections.deque[Task] = collections.deque()
        self.outcomes: dict[int, Outcome] = {}
        try:
            self.blob = pickle.dumps(scorers)
        except (pickle.PicklingError, AttributeError, TypeError) as exc:
            raise ScoringError(f"reward scorers {[s.name for s in scorers]} cannot be sent to "
                               f"worker processes (pickling failed: {exc}); define them at "
                               f"module level of an importable module") from exc
        self.workers = [self._new_worker() for _ in range(workers)]
        self.replaced, self.started = 0, False     # no replacing until all started once
        deadline = time.monotonic() + START_TIMEOUT_S
        while not all(w.ready for w in self.workers):
            if time.monotonic() > deadline:
                self.close()
                raise ScoringError(f"scoring workers did not start within {START_TIMEOUT_S}s")
            self._poll(0.1)
            dead = [w for w in self.workers if not w.ready and not w.proc.is_alive()]
            if dead:
                code = dead[0].proc.exitcode
                self.close()
                raise ScoringError(
                    f"a scoring worker exited with code {code} before it was ready; can the "
                    f"scorers {[s.name for s in scorers]} be unpickled in a fresh process "
                    f"(defined at module level of an importable module)?")
        self.started = True

    def _new_worker(self) -> _Worker:
        return _Worker(self.ctx, self.blob, self.module_files)

    # -- the batch loop ------------------------------------------------------------------
    def run(self, tasks: Sequence[Task]) -> dict[int, Outcome]:
        self.pending = collections.deque(tasks)
        self.outcomes = {}
        for w in list(self.workers):          # died while idle (OOM killer...): no task to blame
            if not w.proc.is_alive():
                self._replace(w, "error", "worker died while idle")
        chunk = max(1, min(self.chunk_size, math.ceil(len(tasks) / (4 * len(self.workers)))))
        while len(self.outcomes) < len(tasks):
            self._dispatch(chunk)
            self._poll(self._next_deadline())
            self._enforce_timeouts()
        return self.outcomes

    def _dispatch(self, chunk: int) -> None:
        for w in self.workers:
            if self.pending and len(w.inflight) <= chunk // 2:
                if not w.inflight:
                    w.since = time.monotonic()
                batch = [self.pending.popleft() for _ in range(min(chunk, len(self.pending)))]
                w.inflight.extend(batch)
                try:
                    w.conn.send(batch)
                except (OSError, ValueError):     # died meanwhile; _poll sees the sentinel
                    pass

    def _next_deadline(self) -> float:
        now, limits = time.monotonic(), [1.0]
        for w in self.workers:
            if w.inflight:
                budget = self.timeout_s if w.ready else START_TIMEOUT_S
                limits.append(w.since + budget - now)
        return max(0.0, min(limits))

    def _poll(self, timeout: float) -> None:
        by_conn = {w.conn: w for w in self.workers}
        by_sentinel = {w.proc.sentinel: w for w in self.workers}
        for obj in wait(list(by_conn) + list(by_sentinel), timeout):
            w = by_conn.get(obj) or by_sentinel.get(obj)
            if w in self.workers:
                self._drain(w)

    def _drain(self, w: _Worker) -> None:
        try:
            while w.conn.poll():
                msg = w.conn.recv()
                if msg[0] == "ready":
                    w.ready, w.since = True, time.monotonic()
                    continue
                task_id, outcome = msg
                if w.inflight and w.inflight[0].task_id == task_id:
                    w.inflight.popleft()
                    self.outcomes[task_id] = outcome
                    w.since = time.monotonic()
        except (EOFError, OSError):
            pass
        if self.started and not w.proc.is_alive():
            w.proc.join(timeout=1)
            self._replace(w, "error", f"worker process died (exit code {w.proc.exitcode})")

    def _enforce_timeouts(self) -> None:
        now = time.monotonic()
        for w in list(self.workers):
            budget = self.timeout_s if w.ready else START_TIMEOUT_S
            if w.inflight and now - w.since > budget:
                what = "timed out" if w.ready else "worker did not start"
                self._replace(w, "timeout", f"{what} after {now - w.since:.2f}s "
                                            f"(limit {budget}s); worker killed")

    def _replace(self, w: _Worker, status: str, message: str) -> None:
        """Kill ``w``; its head task gets ``status``; the rest of its chunk is requeued."""
        w.kill()
        if w.inflight:
            head = w.inflight.popleft()
            self.outcomes[head.task_id] = Outcome(status, message)
            self.pending.extendleft(reversed(w.inflight))
        self.workers[self.workers.index(w)] = self._new_worker()
        self.replaced += 1

    def close(self) -> None:
        for w in self.workers:
            try:
                w.conn.send(None)
            except (OSError, ValueError):
                pass
        deadline = time.monotonic() + 2.0
        for w in self.workers:
            w.proc.join(timeout=max(0.0, deadline - time.monotonic()))
            w.kill()
        self.workers = []
