"""File-system steps that r1zero's writers share: whether the process that owns a temp path is
alive, and publishing a finished temp directory under its final name."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (this process counts; another user's process too)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def publish_dir(tmp: Path, out: Path) -> None:
    """Rename the finished directory ``tmp`` to ``out``. A previous ``out`` is first renamed
    aside to ``.<name>.old-<pid>-<random>`` (so ``out`` is never half-written) and then
    deleted; a run killed between the two renames leaves that aside copy for its next run's
    clean-up to restore."""
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        remove_path(old)


def remove_path(p: Path) -> None:
    """Delete ``p`` (a directory tree, or a file or link; a link's target is left alone)."""
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        p.unlink(missing_ok=True)
