"""Progress output: a tqdm bar on a terminal; on a pipe or a file, one plain line every
``every`` updates (and at the end) instead of carriage-return spam."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO


class LineProgress:
    """The tqdm methods the loops use (``update``, ``set_postfix``, ``close``), as lines:
    ``desc: 20/60 step (33%), 1.2 s/step, reward=0.641 fmt=0.77``."""

    def __init__(self, total: int, initial: int = 0, desc: str = "", unit: str = "it",
                 every: int = 1, stream: TextIO | None = None):
        self.total, self.n, self.desc, self.unit = total, initial, desc, unit
        self.every = max(1, every)
        self.stream = stream or sys.stdout
        self.postfix: dict[str, Any] = {}
        self._t0, self._start, self._last = time.perf_counter(), initial, initial

    def set_postfix(self, **kw: Any) -> None:
        self.postfix = kw

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.n - self._last >= self.every or self.n >= self.total:
            self._print()

    def _print(self) -> None:
        self._last = self.n
        done = self.n - self._start
        rate = (time.perf_counter() - self._t0) / done if done else 0.0
        pct = 100.0 * self.n / self.total if self.total else 100.0
        post = " ".join(f"{k}={v}" for k, v in self.postfix.items())
        line = f"{self.desc}: {self.n}/{self.total} {self.unit} ({pct:.0f}%), {rate:.2f} s/{self.unit}"
        print(line + (f", {post}" if post else ""), file=self.stream, flush=True)

    def close(self) -> None:
        if self.n != self._last:
            self._print()


def progress(total: int, initial: int = 0, desc: str = "", unit: str = "it", every: int = 1,
             tty: bool | None = None):
    """tqdm when stdout is a terminal, else ``LineProgress`` (a line per ``every`` updates)."""
    if tty is None:
        tty = sys.stdout.isatty()
    if not tty:
        return LineProgress(total, initial, desc, unit, every)
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True)
