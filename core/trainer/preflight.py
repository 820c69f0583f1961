"""Checks that run before a model is loaded, so a run fails in seconds, not after training.

- ``require_local_model``: ``model.path`` (and ``model.tokenizer``) must be local directories;
  r1zero never downloads, and a hub id is said to be one at once.
- ``require_writable``: every output directory can be created and written.
- ``RunLock``: one run per output directory. The lock is an ``fcntl.flock`` on
  ``.r1zero.lock`` (released by the kernel when its process dies); the file names the
  holder's pid and host, so a second run's error names them, and a lock file left by a
  killed run is reported as stale and taken over.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Iterable

from r1zero.host.errors import CheckpointError, ConfigError, TrainingError

log = logging.getLogger(__name__)
LOCK_FILE = ".r1zero.lock"


def require_local_model(path: str, key: str = "model.path") -> None:
    if not path:
        raise ConfigError("is empty: set it to a local model directory", key=key)
    p = Path(path).expanduser()
    if not p.exists():
        hub = "/" in path and not path.startswith(("/", ".", "~")) and path.count("/") == 1
        hint = (f"; it looks like a hub id, and r1zero never downloads: fetch it first (e.g. "
                f"`huggingface-cli download {path} --local-dir DIR`) and set {key} to DIR"
                if hub else " (r1zero never downloads models)")
        raise ConfigError(f"no such directory {path!r}{hint}", key=key)
    if not p.is_dir():
        raise ConfigError(f"{path!r} is not a directory", key=key)
    if not any(p.iterdir()):
        raise ConfigError(f"{path!r} is an empty directory (no model files)", key=key)


def require_writable(dirs: dict[str, str]) -> None:
    """Create each directory and write a probe file in it; ``dirs`` maps config key -> path."""
    for key, d in dirs.items():
        probe = Path(d) / f".r1zero-write-probe-{os.getpid()}"
        try:
            Path(d).mkdir(parents=True, exist_ok=True)
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise ConfigError(f"{d!r} is not a writable directory ({exc.strerror or exc}); "
                              "checked before step 1 so no training is lost", key=key) from None


class RunLock:
    """Exclusive use of some output directories by this process (re-entrant within it)."""
    _held: dict[str, list] = {}      # resolved dir -> [fd, count], per process

    def __init__(self, dirs: Iterable[str]):
        self.dirs = sorted({str(Path(d).resolve()) for d in dirs})
        self.taken: list[str] = []

    def acquire(self) -> "RunLock":
        try:
            for d in self.dirs:
                self._take(d)
                self.taken.append(d)
        except BaseException:
            self.release()
            raise
        return self

    def _take(self, d: str) -> None:
        if d in self._held:
            self._held[d][1] += 1
            return
        Path(d).mkdir(parents=True, exist_ok=True)
        path = Path(d) / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe(_read_holder(fd))
            os.close(fd)
            raise TrainingError(f"{d} is in use by another r1zero run ({holder}); wait for it to "
                                "finish or give this run its own checkpoint.dir and logging.dir") \
                from None
        old = _read_holder(fd)
        if old.get("pid"):
            log.warning("stale lock in %s from a run that is gone (%s); taking it over", d,
                        _describe(old))
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                  "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
                  .encode(), 0)
        self._held[d] = [fd, 1]

    def release(self) -> None:
        for d in reversed(self.taken):
            held = self._held.get(d)
            if held is None:
                continue
            held[1] -= 1
            if held[1] == 0:
                del self._held[d]
                os.ftruncate(held[0], 0)        # a clean exit leaves no holder behind
                fcntl.flock(held[0], fcntl.LOCK_UN)
                os.close(held[0])
        self.taken = []


def _read_holder(fd: int) -> dict:
    try:
        data = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _describe(holder: dict) -> str:
    if not holder.get("pid"):
        return "holder unknown"
    return f"pid {holder['pid']} on {holder.get('host', '?')}, since {holder.get('since', '?')}"


def start(cfg, resume: bool, lock: bool = True) -> RunLock | None:
    """Everything checked before a trainer loads its model; returns the held lock (or None)."""
    require_local_model(cfg.model.path)
    if cfg.model.tokenizer:
        require_local_model(cfg.model.tokenizer, "model.tokenizer")
    if resume and cfg.checkpoint.load and not Path(cfg.checkpoint.load).is_dir():
        raise CheckpointError("no such checkpoint (not a directory)", path=cfg.checkpoint.load)
    require_writable({"checkpoint.dir": cfg.checkpoint.dir, "logging.dir": cfg.logging.dir})
    return RunLock([cfg.checkpoint.dir, cfg.logging.dir]).acquire() if lock else None
