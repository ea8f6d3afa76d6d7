"""Import and export of the registry from the console: the CLI's file format and code
(storage/registry_io.py, `hotline retirees import/export`), kept within the person's units.

An admin imports as the CLI does. For staff every row must stay inside the units they serve: a
row that names a community they do not serve, names none, or whose phone belongs to a retiree
outside their units is refused with its row number, and the other rows are imported as usual.
An export holds the retirees of the person's communities only.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import select
from sqlalchemy.orm import Session

from console.registry import Scope, registry_scope
from storage.models import Retiree, Staff
from storage.registry_format import ACCEPTED_EXTENSIONS, ParsedRow, RegistryFileError
from storage.registry_io import ImportReport, RowCheck, export_retirees, import_retirees

MAX_UPLOAD_BYTES = 20 * 1024 * 1024  # 100,000 rows of .xlsx are about 6 MB
UNSAFE = re.compile(r"[^\w.\-]+")
MEDIA_TYPES = {
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ".csv": "text/csv; charset=utf-8",
}


class UploadRefused(Exception):
    """The upload itself is unusable (no file, wrong type, too large): ``key`` says why."""

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(key)


@dataclass(frozen=True)
class ImportOutcome:
    file_name: str
    report: ImportReport | None = None
    error_key: str = ""  # the upload or the file as a whole was refused
    detail: str = ""  # what the reader said about the file


class ScopeCheck:
    """The row check for a person who does not serve the whole centre."""

    def __init__(self, session: Session, scope: Scope, text: Callable[[str], str]) -> None:
        self.session, self.scope, self.text = session, scope, text
        self._communities: dict[int, int | None] | None = None

    def __call__(self, row: ParsedRow, owner: int | None) -> str | None:
        if owner is not None and not self.scope.covers(self._community_of(owner)):
            return self.text("console.registry.import.refused_owner")
        if "community_id" in row.values:
            community_id = row.values["community_id"]
            if community_id is None:
                return self.text("console.registry.import.community_required")
            if not self.scope.covers(community_id):
                return self.text("console.registry.import.refused_community")
        elif owner is None:
            return self.text("console.registry.import.community_required")
        return None

    def _community_of(self, retiree_id: int) -> int | None:
        if self._communities is None:  # read once, on the first row that updates someone
            query = select(Retiree.id, Retiree.community_id)
            self._communities = {rid: cid for rid, cid in self.session.execute(query)}
        return self._communities.get(retiree_id)


def safe_file_name(name: str) -> str:
    """The uploaded file's own name, safe to create in a folder of ours (kept for the audit log)."""
    base = Path(name.replace("\\", "/")).name
    stem, suffix = Path(base).stem, Path(base).suffix.lower()
    stem = UNSAFE.sub("_", stem).strip("._")[:80] or "upload"
    return stem + suffix


def save_upload(source: BinaryIO, name: str, folder: Path) -> Path:
    """Copy the upload to ``folder`` under its own name; refuses other types and huge files."""
    path = folder / safe_file_name(name)
    if path.suffix not in ACCEPTED_EXTENSIONS:
        raise UploadRefused("console.registry.import.wrong_type")
    size = 0
    with path.open("wb") as out:
        while chunk := source.read(1024 * 1024):
            size += len(chunk)
            if size > MAX_UPLOAD_BYTES:
                raise UploadRefused("console.registry.import.too_large")
            out.write(chunk)
    if size == 0:
        raise UploadRefused("console.registry.import.no_file")
    return path


def import_upload(
    session: Session,
    staff: Staff,
    source: BinaryIO,
    name: str,
    today: date,
    text: Callable[[str], str],
) -> ImportOutcome:
    """Import an uploaded file in the request's transaction, as the CLI does (bad rows are
    reported, the good ones kept)."""
    scope = registry_scope(session, staff)
    check: RowCheck | None = None if scope.everything else ScopeCheck(session, scope, text)
    with tempfile.TemporaryDirectory(prefix="hotline-import-") as folder:
        try:
            path = save_upload(source, name, Path(folder))
            report = import_retirees(
                session, path, actor=staff, actor_label=staff.role.value, today=today, check=check
            )
        except UploadRefused as exc:
            return ImportOutcome(safe_file_name(name), error_key=exc.key)
        except RegistryFileError as exc:
            return ImportOutcome(
                exc.path.name, error_key="console.registry.import.unreadable", detail=exc.message
            )
    return ImportOutcome(path.name, report=report)


def export_file(session: Session, staff: Staff, suffix: str, today: date) -> tuple[str, bytes]:
    """(file name, content) of the person's retirees in the import format; audited."""
    scope = registry_scope(session, staff)
    name = f"retirees-{today.isoformat()}{suffix}"
    with tempfile.TemporaryDirectory(prefix="hotline-export-") as folder:
        path = Path(folder) / name
        export_retirees(
            session,
            path,
            actor=staff,
            actor_label=staff.role.value,
            community_ids=scope.unit_ids,
        )
        return name, path.read_bytes()
