"""Issue 21 item 1 (megatron): a payload in a megatron ``dist_checkpointing`` bytes item
(``_extra_state``, here as megatron writes it: a ``ShardedObject`` in the torch_dist format)
never runs, at 1 and 2 gloo ranks on CPU.

Before: megatron's load planner read the item with ``torch.load(weights_only=False)`` and the
payload ran on every rank (8 times at the issue's layout). Now ``megatron.state.check``
refuses the item by name and ``megatron.state.safe_strategy`` makes megatron's own load read it
as plain data; the unsafe default is run too, so the test shows the payload is live.
"""

from __future__ import annotations

import os

import pytest
import torch

pytest.importorskip("megatron.core")

from tests.megatron.workers import join, spawn  # noqa: E402
from tests.security.payload import Payload


def _state(rank, world, value):
    from megatron.core.dist_checkpointing import ShardedObject, ShardedTensor

    key = "decoder.layers.0._extra_state"
    return {"w": ShardedTensor.from_rank_offsets("w", torch.full((2,), float(rank)),
                                                 (0, rank, world)),
            key: ShardedObject(key, value, (world,), (rank,), replica_id=0)}


def _save_then_load(rank, world, port, out, marker):
    from megatron.core import dist_checkpointing
    from r1zero.engines.megatron.state import safe_strategy
    from r1zero.engines.state_io import check_dcp, dcp_errors
    from r1zero.host.errors import CheckpointError

    join(rank, world, port)
    ckpt = os.path.join(out, "mcore")
    if rank == 0:
        os.makedirs(ckpt)
    torch.distributed.barrier()
    dist_checkpointing.save(_state(rank, world, Payload(f"{marker}.rank{rank}")), ckpt)
    torch.distributed.barrier()
    result = {}
    try:
        check_dcp(__import__("pathlib").Path(ckpt))
    except CheckpointError as exc:
        result["check"] = str(exc)
    try:
        with dcp_errors(__import__("pathlib").Path(ckpt)):
            dist_checkpointing.load(_state(rank, world, None), ckpt, sharded_strategy=safe_strategy())
    except CheckpointError as exc:
        result["load"] = str(exc)
    result["ran_safe"] = any(os.path.exists(f"{marker}.rank{r}") for r in range(world))
    torch.distributed.barrier()
    dist_checkpointing.load(_state(rank, world, None), ckpt)     # megatron's own default
    torch.distributed.barrier()
    result["ran_default"] = os.path.exists(f"{marker}.rank{rank}")
    torch.save(result, os.path.join(out, f"rank{rank}.pt"))
    torch.distributed.destroy_process_group()


@pytest.mark.parametrize("world", [1, 2])
def test_a_payload_in_megatron_extra_state_never_runs(tmp_path, world):
    marker = str(tmp_path / "pwned")
    spawn(_save_then_load, world, str(tmp_path), marker)
    for rank in range(world):
        r = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert "_extra_state" in r["check"] and "never unpickles" in r["check"], r
        assert "_extra_state" in r["load"] and "never unpickles" in r["load"], r
        assert not r["ran_safe"]
        assert r["ran_default"]         # the payload is live: megatron's default runs it
