"""What came in while the database could not be reached, kept in files until it answers again.

A webhook that cannot be written to the database is not lost: its (already checked) content is
put in the spool, one JSON file per item in a folder of this machine (``data_dir/spool``), and
the provider is answered as if all went well, so that it does not give up on us after a few
retries. When the database answers again the items are taken out in the order they came in and
handled as if they had just arrived (bot/channels/twilio/outage.py).

Files, not memory: the process may be restarted before the database is back. Each item is
written to a temporary name, flushed to disk and renamed into place, so a crash leaves either
the whole item or none. Several processes (uvicorn workers) share a folder: an item is taken by
renaming ``NAME.json`` to ``NAME.json.taken``, which only one of them can do; a taken item is
deleted when it was handled, or renamed back to be tried again. A process that dies holding
items leaves them taken: after `STALE_S` any process may take them again (handling an item
twice is harmless: every webhook is recognised by its provider id).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger(__name__)

SUFFIX = ".json"
TAKEN = ".taken"
FAILED = ".failed"
FAILED_BECAUSE = "failed_because"  # written into a failed item: what went wrong
STALE_S = 300.0  # a taken item older than this was left by a process that died


@dataclass(frozen=True)
class Taken:
    """One item, taken out of the spool by this process: `done` or `put_back` it."""

    path: Path  # NAME.json.taken
    item: dict[str, Any]

    def done(self) -> None:
        self.path.unlink(missing_ok=True)

    def put_back(self) -> None:
        """Leave it for the next try (the database went away again)."""
        _rename(self.path, self.path.with_name(self.path.name.removesuffix(TAKEN)))

    def failed(self, error: str | None = None) -> None:
        """Set it aside for good (it could not be handled) for an operator to read and, once
        the cause is fixed, to hand back (`Spool.retry`, `hotline spool retry`). ``error``,
        what went wrong, is written into the item; without it the file is only renamed."""
        name = self.path.name.removesuffix(TAKEN).removesuffix(SUFFIX) + FAILED
        target = self.path.with_name(name)
        if error is None:
            _rename(self.path, target)
            return
        _write(target, {**self.item, FAILED_BECAUSE: error})
        self.path.unlink()
        _sync_folder(self.path.parent)


class Spool:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def put(self, item: dict[str, Any]) -> Path:
        """Keep ``item`` (JSON-able) on disk; its file name sorts in the order items came in."""
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        final = self.directory / f"{name}{SUFFIX}"
        _write(final, item)
        return final

    def waiting(self) -> bool:
        """Anything to hand over (waiting or taken): new arrivals that must keep their order
        behind the spooled ones are spooled too while this is so."""
        return any(self._names((SUFFIX, TAKEN)))

    def count(self) -> int:
        return sum(1 for _ in self._names((SUFFIX, TAKEN)))

    def counts(self) -> tuple[int, int]:
        """(waiting or taken, failed), from one listing of the folder."""
        names = list(self._names((SUFFIX, TAKEN, FAILED)))
        failed = sum(1 for name in names if name.endswith(FAILED))
        return len(names) - failed, failed

    def failed_items(self) -> list[Path]:
        """The items set aside (`Taken.failed`), oldest first."""
        return [self.directory / name for name in sorted(self._names((FAILED,)))]

    def retry(self, path: Path) -> Path:
        """Hand the failed item ``path`` back to the spool (its cause fixed): the replayer of a
        running server takes it within seconds. Returns its new path."""
        if path.parent.resolve() != self.directory.resolve() or not path.name.endswith(FAILED):
            raise ValueError(f"{path}: not a failed item of the spool {self.directory}")
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such failed item (handed back already?)")
        target = path.with_name(path.name.removesuffix(FAILED) + SUFFIX)
        _rename(path, target)
        return target

    def take(self, now: float | None = None) -> list[Taken]:
        """Every item no other process holds, oldest first (stale taken ones included)."""
        now = time.time() if now is None else now
        for name in self._names((TAKEN,)):
            path = self.directory / name
            try:
                if now - path.stat().st_mtime > STALE_S:
                    _rename(path, path.with_name(name.removesuffix(TAKEN)))
            except FileNotFoundError:
                continue  # done or taken back meanwhile
        taken: list[Taken] = []
        for name in sorted(self._names((SUFFIX,))):
            path = self.directory / name
            held = path.with_name(name + TAKEN)
            try:
                os.rename(path, held)
                os.utime(held)  # the moment it was taken: what `STALE_S` measures
            except FileNotFoundError:
                continue  # another process took it
            try:
                item = json.loads(held.read_text(encoding="utf-8"))
            except (ValueError, OSError) as exc:
                log.error("spool_item_unreadable", file=name, error=str(exc)[:200])
                Taken(held, {}).failed()
                continue
            taken.append(Taken(held, item))
        return taken

    def _names(self, suffixes: tuple[str, ...]) -> Iterator[str]:
        try:
            with os.scandir(self.directory) as entries:
                for entry in entries:
                    if entry.name.endswith(suffixes) and not entry.name.startswith("."):
                        yield entry.name
        except FileNotFoundError:
            return


def _write(path: Path, item: dict[str, Any]) -> None:
    """Write ``item`` as ``path`` all at once (a temporary file renamed), flushed to disk."""
    temporary = path.with_name(f".{path.name}.tmp")
    data = json.dumps(item, ensure_ascii=False).encode()
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
    _sync_folder(path.parent)


def _rename(source: Path, target: Path) -> None:
    os.rename(source, target)
    _sync_folder(source.parent)


def _sync_folder(directory: Path) -> None:
    """Make a rename in ``directory`` survive a power cut."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
