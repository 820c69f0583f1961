"""r1zero reward plugin ``length_penalty``: DAPO's soft overlong punishment (Yu et al. 2025, §3.4).

With response length L, budget B = ``max_length`` and buffer C = ``buffer`` (same unit)::

    p(L) = 0                  if L <= B - C
         = (B - C - L) / C    if B - C < L <= B      (falls linearly from 0 to -1)
         = -1                 if L > B
    reward = factor * p(L)

It is meant to be added to a correctness reward, e.g. in a recipe::

    rewards:
      base_acc: {weight: 1.0}
      length_penalty: {weight: 0.5, options: {max_length: 4096, buffer: 1024}}

Components logged per sample: ``length`` (L) and ``overlong`` (1.0 when L > B).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from r1zero.hookspecs import hookimpl

UNITS = ("chars", "words", "tokens")
# path -> tokenizers.Tokenizer, loaded once per process (a scorer pickles its path, not the tokenizer)
_TOKENIZERS: dict[str, Any] = {}


class LengthPenalty:
    name = "length_penalty"
    components = ("length", "overlong")
    in_process = True
    in_process_reason = "counts characters, words or tokens: linear time, cannot hang"

    def __init__(self, max_length: int = 4096, buffer: int = 1024, factor: float = 1.0,
                 unit: str = "chars", tokenizer: str | None = None):
        if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length <= 0:
            raise ValueError(f"max_length must be a positive integer, got {max_length!r}")
        if isinstance(buffer, bool) or not isinstance(buffer, int) or not 0 <= buffer <= max_length:
            raise ValueError(f"buffer must be an integer in [0, max_length={max_length}], "
                             f"got {buffer!r}")
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or factor < 0:
            raise ValueError(f"factor must be a number >= 0, got {factor!r}")
        if unit not in UNITS:
            raise ValueError(f"unit must be one of {list(UNITS)}, got {unit!r}")
        if unit == "tokens" and not tokenizer:
            raise ValueError("unit 'tokens' needs the option tokenizer: <dir or tokenizer.json>")
        if tokenizer is not None and not Path(tokenizer).exists():
            raise ValueError(f"tokenizer {tokenizer!r} does not exist")
        self.max_length, self.buffer, self.factor = max_length, buffer, float(factor)
        self.unit, self.tokenizer = unit, tokenizer

    def configure(self, **options: Any) -> "LengthPenalty":
        """A new scorer from ``rewards.length_penalty.options``; unknown keys raise TypeError."""
        known = ("max_length", "buffer", "factor", "unit", "tokenizer")
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise TypeError(f"unknown option(s) {unknown}; known: {list(known)}")
        current = {k: getattr(self, k) for k in known}
        return type(self)(**{**current, **options})

    def length(self, response: str) -> int:
        if self.unit == "chars":
            return len(response)
        if self.unit == "words":
            return len(response.split())
        return len(_tokenizer(self.tokenizer).encode(response, add_special_tokens=False).ids)

    def penalty(self, length: int) -> float:
        """p(L) of the module docstring, in [-1, 0]."""
        safe = self.max_length - self.buffer
        if length <= safe:
            return 0.0
        if length > self.max_length:
            return -1.0
        return (safe - length) / self.buffer

    def score(self, response: str, ground_truth: str, extra: Mapping[str, Any]) -> dict[str, float]:
        text = response if isinstance(response, str) else ""
        n = self.length(text)
        return {"reward": self.factor * self.penalty(n), "length": float(n),
                "overlong": 1.0 if n > self.max_length else 0.0}

    def __repr__(self) -> str:
        return (f"LengthPenalty(max_length={self.max_length}, buffer={self.buffer}, "
                f"factor={self.factor}, unit={self.unit!r})")


def _tokenizer(path: str) -> Any:
    tok = _TOKENIZERS.get(path)
    if tok is None:
        from tokenizers import Tokenizer

        p = Path(path)
        tok = _TOKENIZERS[path] = Tokenizer.from_file(str(p / "tokenizer.json" if p.is_dir() else p))
    return tok


@hookimpl
def register_rewards(register):
    register(LengthPenalty())
