"""A per-sample time budget for the parser, inside the scorer.

``call_within(0.4, fn, *args)`` returns ``fn(*args)``, or raises ``OverBudget`` in ``fn``
once it has used 0.4 s of CPU time (user + system, this process) or ``WALL_FACTOR`` times
that in wall time — and again every 50 ms after that, should something in ``fn`` swallow the
first one. CPU time decides, so a verdict does not depend on how busy the machine is (on
a 2-core machine running ten jobs, wall time runs at ~3x CPU time, and the slowest answer
of the bench corpus needs 0.27 s of CPU there); the wall-clock cap bounds latency when the
process gets less than that share of a core.

It works for Python-level work (math-verify's ANTLR parser, sympy's simplify); a single
long C call is interrupted only when it returns, which is why ``math_bounds`` refuses
the inputs that make such calls (huge factorials, binomials, powers) before any parser runs.

The timers are ``ITIMER_PROF`` / SIGPROF and ``ITIMER_REAL`` / SIGALRM, so the budget acts
only in the main thread of a process on a platform that has ``setitimer``; elsewhere ``fn``
runs unbounded (the scoring pool's kill timeout still applies). Timers and handlers set up
by the caller are restored; a signal that arrives after ``fn`` is done is ignored. The garbage
collector is paused during ``fn``: in a process with a large heap (the trainer's own, when it
scores in-process) one collection pass can cost more than the whole budget.
Not reentrant: ``fn`` must not call ``call_within`` itself.
"""

from __future__ import annotations

import gc
import signal
import threading
import time
from typing import Any, Callable, TypeVar

REPEAT_S = 0.05
WALL_FACTOR = 2.0
T = TypeVar("T")
_ARMED = [False]        # a list: the store that disarms is one bytecode, no call before it


class OverBudget(BaseException):
    """Raised in the budgeted call; a BaseException, so ``except Exception`` in a parser
    does not swallow it."""


def _on_signal(signum: int, frame: Any) -> None:      # noqa: ARG001 - handler signature
    if _ARMED[0]:
        raise OverBudget("time budget exhausted")


def can_bound() -> bool:
    return hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()


def call_within(seconds: float, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` with a CPU-time budget of ``seconds`` (see module doc)."""
    if not can_bound():
        return fn(*args)
    timers = ((signal.ITIMER_PROF, signal.SIGPROF, seconds, time.process_time),
              (signal.ITIMER_REAL, signal.SIGALRM, seconds * WALL_FACTOR, time.monotonic))
    saved = []
    for timer, signum, delay, clock in timers:
        handler = signal.signal(signum, _on_signal)
        saved.append((handler, signal.setitimer(timer, delay, REPEAT_S), clock()))
    collecting = gc.isenabled()
    gc.disable()        # a collection pass over a big heap (a trainer's) is not fn's cost
    try:
        _ARMED[0] = True
        return fn(*args)
    finally:
        _ARMED[0] = False
        if collecting:
            gc.enable()
        for (timer, signum, _, clock), (handler, (delay, interval), start) in zip(timers, saved):
            signal.setitimer(timer, 0)
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
            if delay > 0:
                signal.setitimer(timer, max(delay - (clock() - start), 1e-3), interval)
