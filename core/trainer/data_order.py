"""Which prompts each step consumes: a seeded permutation per epoch plus a position.

The state (``epoch``, ``position``) is all a checkpoint needs for exact resume: no prompt is
lost or repeated, because the permutation of an epoch is a pure function of (seed, epoch).
"""

from __future__ import annotations

import random

import attrs


@attrs.define
class PromptOrder:
    n_rows: int
    seed: int
    shuffle: bool = True
    epoch: int = 0
    position: int = 0

    def _perm(self, epoch: int) -> list[int]:
        order = list(range(self.n_rows))
        if self.shuffle:
            random.Random(self.seed * 1_000_003 + epoch).shuffle(order)
        return order

    def take(self, k: int) -> list[int]:
        """The next ``k`` row indices, wrapping into the next epoch's permutation."""
        if self.n_rows == 0:
            raise ValueError("the dataset has no rows")
        out: list[int] = []
        while len(out) < k:
            perm = self._perm(self.epoch)
            need = k - len(out)
            out.extend(perm[self.position:self.position + need])
            self.position += need
            if self.position >= self.n_rows:
                self.epoch, self.position = self.epoch + 1, 0
        return out

    def state(self) -> dict:
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed,
                "n_rows": self.n_rows, "shuffle": self.shuffle}

    def load(self, state: dict) -> None:
        if state["n_rows"] != self.n_rows or state["seed"] != self.seed:
            raise ValueError(f"checkpoint data order was for {state['n_rows']} rows / seed "
                             f"{state['seed']}, this run has {self.n_rows} rows / seed {self.seed}")
        self.epoch, self.position = state["epoch"], state["position"]
