"""A lock file that one process of a machine holds at a time (the kernel's flock: released when
its process ends, however it ends)."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


def try_flock(path: Path) -> int | None:
    """The open descriptor of ``path``, locked exclusively, or None when another process holds
    it. Closing the descriptor releases the lock."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd
