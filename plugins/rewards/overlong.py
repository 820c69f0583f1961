"""``overlong_penalty``: DAPO's soft overlong punishment, by the response's token count
(Yu et al. 2025, "DAPO", arXiv:2503.14476, section 3.4):

    0                                  if n <= L_max - L_cache
    ((L_max - L_cache) - n) / L_cache  if L_max - L_cache < n <= L_max
    -1                                 if n > L_max

n is the number of tokens the policy generated for the response, which the trainer passes
in ``extra["response_tokens"]``; L_max = ``max_length``, L_cache = ``buffer`` (options).
Add it beside the correctness reward:
``rewards: {base_acc: {weight: 1.0}, overlong_penalty: {options: {max_length: 1024, buffer: 256}}}``.
"""

from __future__ import annotations

from typing import Any, ClassVar, Mapping

import attrs

from r1zero.algo.filters import overlong_penalty
from r1zero.host.hookspecs import hookimpl


def _check(instance: Any, attribute: Any, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{attribute.name} must be a whole number >= 1, got {value!r}")


@attrs.frozen
class OverlongPenalty:
    max_length: int = attrs.field(default=20480, validator=_check)
    buffer: int = attrs.field(default=4096, validator=_check)

    name: ClassVar[str] = "overlong_penalty"
    components: ClassVar[tuple[str, ...]] = ("overlong",)
    in_process: ClassVar[bool] = True
    in_process_reason: ClassVar[str] = "arithmetic on one integer: cannot hang"

    def __attrs_post_init__(self):
        if self.buffer > self.max_length:
            raise ValueError(f"buffer {self.buffer} exceeds max_length {self.max_length}")

    def configure(self, **options: Any) -> "OverlongPenalty":
        return attrs.evolve(self, **options)

    def score(self, response: str, ground_truth: str, extra: Mapping[str, Any]) -> dict[str, float]:
        n = extra.get("response_tokens")
        if isinstance(n, bool) or not isinstance(n, int):
            raise ValueError("overlong_penalty needs extra['response_tokens'], the response's "
                             "token count (the trainer passes it; `r1zero score` rows need a "
                             "'response_tokens' key)")
        penalty = overlong_penalty(n, self.max_length, self.buffer)
        return {"reward": penalty, "overlong": 1.0 if n > self.max_length else 0.0}


@hookimpl
def register_rewards(register):
    register(OverlongPenalty())
