"""A reward that varies from sample to sample even for a random model (a local plugin module
for the multi-rank tests): the decoded response's length in characters / 100."""

from __future__ import annotations

from typing import Any, Mapping

from r1zero.hookspecs import hookimpl


class TextLength:
    name = "text_length"
    components = ("chars",)
    in_process = True
    in_process_reason = "counts characters: linear time, cannot hang"

    def configure(self, **options: Any) -> "TextLength":
        if options:
            raise TypeError(f"unknown option(s) {sorted(options)}; text_length takes none")
        return self

    def score(self, response: str, ground_truth: str, extra: Mapping[str, Any]) -> dict[str, float]:
        n = len(response) if isinstance(response, str) else 0
        return {"reward": n / 100, "chars": float(n)}


@hookimpl
def register_rewards(register):
    register(TextLength())
