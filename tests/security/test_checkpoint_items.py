"""Issue 21 items 1 and 4: the optimizer's DCP shards (``optim/*.distcp``) never run code, and a
damaged shard is found by validation, so resume takes the newest intact checkpoint.

Before: DCP's default load planner read every bytes item (the optimizer's ``param_groups``)
with ``torch.load(weights_only=False)``: an ``os.system`` payload there ran on ``--resume``,
and validation, which read only ``.metadata``, passed the checkpoint. A truncated or missing
shard, or a storage entry pointing at ``/dev/zero`` with a huge length, crashed mid-load.
"""

from __future__ import annotations

import pickle
import shutil

import pytest
import torch

from r1zero.config.load import load_config
from r1zero.host.errors import CheckpointError
from r1zero.trainer import checkpoint
from r1zero.trainer.grpo import GRPOTrainer
from tests.security.conftest import resume, trained  # noqa: F401 - fixture
from tests.security.payload import Payload
from tests.trainer.conftest import tiny_setup  # noqa: F401 - fixture


def rewrite_optim(step_dir, mutate, tmp_path):
    """Re-save ``step_dir/optim`` with ``mutate`` applied to its state dict (our own files:
    read here with DCP's trusting converter, as a user's crafted file would be written)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    optim = step_dir / "optim"
    dcp_to_torch_save(str(optim), str(tmp_path / "optim.pt"))
    state = torch.load(tmp_path / "optim.pt", weights_only=False)
    mutate(state)
    shutil.rmtree(optim)
    dcp.save(state, checkpoint_id=str(optim))


def plant(state, marker):
    state["optim"]["param_groups"][0]["lr"] = Payload(marker)


def test_a_payload_in_the_optimizer_param_groups_never_runs(run, tmp_path):
    _, ckpt = run
    marker = tmp_path / "pwned"
    step = ckpt / "step_000002"
    rewrite_optim(step, lambda s: plant(s, marker), tmp_path)
    assert b"posix" in b"".join(f.read_bytes() for f in (step / "optim").glob("*.distcp"))
    with pytest.raises(CheckpointError, match="never unpickles") as err:
        checkpoint.read(step)
    assert "param_groups" in str(err.value) and ".distcp" in str(err.value)
    assert not marker.exists()


def test_the_load_path_itself_reads_items_as_plain_data(run, tmp_path):
    """Past validation (a file swapped between check and load), the engine's own load
    refuses the item too."""
    from r1zero.engines.state import load_engine_state

    cfg, ckpt = run
    marker = tmp_path / "pwned"
    step = ckpt / "step_000002"
    rewrite_optim(step, lambda s: plant(s, marker), tmp_path)
    trainer = GRPOTrainer.from_config(load_config(None, base=cfg))
    try:
        with pytest.raises(CheckpointError, match="never unpickles"):
            load_engine_state(trainer.engine, step)
    finally:
        trainer.close()
    assert not marker.exists()


def test_resume_skips_a_checkpoint_with_a_payload_and_says_why(run, tmp_path, caplog):
    cfg, ckpt = run
    marker = tmp_path / "pwned"
    rewrite_optim(ckpt / "step_000002", lambda s: plant(s, marker), tmp_path)
    assert resume(cfg, caplog) == 1 and not marker.exists()
    assert "step_000002 is damaged" in caplog.text and "param_groups" in caplog.text


def _shard(step):
    return sorted((step / "optim").glob("*.distcp"))[0]


@pytest.mark.parametrize("damage,fragment", [
    ("truncated", "truncated"),
    ("missing", "missing or not a regular file"),
    ("dev_zero", "outside the checkpoint"),
    ("symlink_zero", "not a regular file"),
])
def test_a_damaged_shard_is_found_by_validation(run, tmp_path, damage, fragment, caplog):
    cfg, ckpt = run
    step = ckpt / "step_000002"
    shard = _shard(step)
    if damage == "truncated":
        shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 3])
    elif damage == "missing":
        shard.unlink()
    elif damage == "symlink_zero":
        shard.unlink()
        shard.symlink_to("/dev/zero")
    else:                                   # .metadata: an entry at /dev/zero, 2**40 bytes
        from r1zero.engines.state_io import read_dcp_metadata
        meta = read_dcp_metadata(step / "optim")
        for info in meta.storage_data.values():
            info.relative_path, info.length = "../../../../../dev/zero", 1 << 40
        (step / "optim" / ".metadata").write_bytes(pickle.dumps(meta))
    with pytest.raises(CheckpointError, match=fragment):
        checkpoint.read(step)
    assert resume(cfg, caplog) == 1 and "resuming from step_000001" in caplog.text


def test_flipped_bytes_inside_a_shard_are_found_by_the_manifest(run, caplog):
    cfg, ckpt = run
    step = ckpt / "step_000002"
    assert "optim/" + _shard(step).name in (step / "manifest.json").read_text()
    shard = _shard(step)
    data = bytearray(shard.read_bytes())
    for i in range(len(data) // 2, len(data) // 2 + 8):      # inside a tensor's bytes
        data[i] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum differs"):
        checkpoint.read(step)
    assert resume(cfg, caplog) == 1 and "checksum differs" in caplog.text


@pytest.fixture
def small_disk(tmp_path):
    """A real 24 MiB file system (tmpfs); skipped where this process may not mount."""
    import subprocess

    mnt = tmp_path / "disk"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mnt)],
                      capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_full_disk_during_a_save_is_an_error_and_the_last_checkpoint_stays(run, small_disk):
    cfg, _ = run
    ckpt = small_disk / "ckpt"
    trainer = GRPOTrainer.from_config(load_config(None, base=cfg))
    try:
        extra = {"data": {}, "rng": checkpoint.rng_state(torch.Generator())}
        checkpoint.save(ckpt, 1, trainer.engine, trainer.tokenizer, extra)
        with open(small_disk / "filler", "wb") as fh:      # leave ~1 MiB
            free = shutil.disk_usage(small_disk).free - (1 << 20)
            fh.write(b"\0" * max(free, 0))
        with pytest.raises(CheckpointError) as err:
            checkpoint.save(ckpt, 2, trainer.engine, trainer.tokenizer, extra)
    finally:
        trainer.close()
    msg = str(err.value)
    assert "saving step 2 failed" in msg and "MiB free" in msg and str(ckpt) in msg, msg
    assert "step_000001 stays the latest" in msg
    assert (ckpt / "latest").read_text() == "step_000001"
    assert not list(ckpt.glob(".tmp_step_*")) and not (ckpt / "step_000002").exists()
    checkpoint.read(ckpt / "step_000001")
