"""Issue 21 item 1 (fsdp, 2 ranks): a payload in the optimizer's ``param_groups`` of a sharded
engine checkpoint never runs on any rank. Two gloo ranks save a real FSDP engine state, rank 0
rewrites ``optim/`` with the payload, both ranks load: each refuses the item by name.

Before: DCP's default planner unpickled the item on both ranks (the ``os.system`` ran twice).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch

from r1zero.config.load import load_config
from tests.engines.test_fsdp import SECTIONS, _free_port, _Tok
from tests.security.payload import Payload
from tests.trainer.conftest import recipe, tiny_setup  # noqa: F401 - fixture


def _plant(optim: Path, marker: str, scratch: Path) -> None:
    """Re-save ``optim`` (our own files: read with DCP's trusting converter) with the payload."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    dcp_to_torch_save(str(optim), str(scratch))
    state = torch.load(scratch, weights_only=False)
    state["optim"]["param_groups"][0]["lr"] = Payload(marker)
    shutil.rmtree(optim)
    dcp.save(state, checkpoint_id=str(optim), no_dist=True)


def _rank(rank: int, world: int, port: int, base: dict, out: str) -> None:
    import torch.distributed as tdist

    from r1zero.engines.fsdp import FSDPTrainEngine
    from r1zero.engines.state import load_engine_state, save_engine_state
    from r1zero.host.errors import CheckpointError

    torch.set_num_threads(1)
    tdist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                             world_size=world)
    try:
        engine = FSDPTrainEngine(load_config(None, base=base), _Tok(), "cpu")
        ckpt = Path(out) / "step"
        if rank == 0:
            (ckpt / "model").mkdir(parents=True)
        tdist.barrier()
        save_engine_state(engine, ckpt)
        marker = str(Path(out) / "pwned")
        if rank == 0:
            _plant(ckpt / "optim", marker, Path(out) / "optim.pt")
        tdist.barrier()
        try:
            load_engine_state(engine, ckpt)
            refused = ""
        except CheckpointError as exc:
            refused = str(exc)
        tdist.barrier()
        torch.save({"refused": refused, "ran": os.path.exists(marker)},
                   Path(out) / f"rank{rank}.pt")
    finally:
        tdist.destroy_process_group()


def test_a_payload_in_sharded_optimizer_state_never_runs_on_any_rank(tiny_setup, tmp_path):  # noqa: F811
    import torch.multiprocessing as mp

    base = recipe(tiny_setup, tmp_path, **SECTIONS)
    mp.spawn(_rank, args=(2, _free_port(), base, str(tmp_path)), nprocs=2, join=True)
    for rank in range(2):
        r = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert "param_groups" in r["refused"] and "never unpickles" in r["refused"], r
        assert not r["ran"], rank
