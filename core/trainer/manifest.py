"""``manifest.json``: every file of a checkpoint with its size and SHA-256, written at save after
every rank's shards are on disk, checked before a resume reads anything.

    {"version": 1, "files": {"optim/__0_0.distcp": {"size": 1234, "sha256": "ab12..."}, ...}}

A missing, truncated, replaced or bit-flipped file, or a symlink in place of a file, is a
``CheckpointError`` naming it, so ``--resume`` falls back to the newest intact checkpoint.
``meta.json`` (written after the manifest; it marks the save finished) and the manifest itself
are not listed. Checkpoints of earlier releases have no manifest: they are read as before and
the caller says that nothing was checksummed.

Cost: one read of the checkpoint at save and at resume (SHA-256 runs at ~1 GB/s per core).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from r1zero.host.errors import CheckpointError

MANIFEST = "manifest.json"
SKIP = {MANIFEST, "meta.json"}
CHUNK = 1 << 22


def sha256(f: Path) -> str:
    h = hashlib.sha256()
    with open(f, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def write(directory: Path) -> None:
    """``directory/manifest.json`` over every regular file below it (symlinks refused)."""
    directory = Path(directory)
    files = {}
    for f in sorted(directory.rglob("*")):
        rel = f.relative_to(directory).as_posix()
        if rel in SKIP or f.is_dir() and not f.is_symlink():
            continue
        if f.is_symlink() or not f.is_file():
            raise CheckpointError("not a regular file; a checkpoint holds files only", path=str(f))
        files[rel] = {"size": f.stat().st_size, "sha256": sha256(f)}
    (directory / MANIFEST).write_text(json.dumps({"version": 1, "files": files}, indent=1))


def verify(directory: Path) -> bool:
    """Check every file the manifest lists (regular, inside, same size and SHA-256); False
    when there is no manifest (an earlier release's checkpoint), CheckpointError otherwise."""
    directory = Path(directory)
    path = directory / MANIFEST
    if not path.exists():
        return False
    try:
        files = json.loads(path.read_text(encoding="utf-8"))["files"]
        entries = [(str(rel), int(e["size"]), str(e["sha256"])) for rel, e in files.items()]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"unreadable: {type(exc).__name__}: {exc}", path=str(path)) from None
    base = directory.resolve()
    for rel, size, digest in entries:
        f = directory / rel
        if not f.resolve().is_relative_to(base) or ".." in Path(rel).parts:
            raise CheckpointError(f"lists {rel!r}, outside the checkpoint", path=str(path))
        if f.is_symlink() or not f.is_file():
            raise CheckpointError("missing or not a regular file (listed in manifest.json)",
                                  path=str(f))
        if f.stat().st_size != size:
            raise CheckpointError(f"{f.stat().st_size} bytes, manifest.json says {size} "
                                  f"(truncated or replaced)", path=str(f))
        if sha256(f) != digest:
            raise CheckpointError("checksum differs from manifest.json (damaged or altered)",
                                  path=str(f))
    return True
