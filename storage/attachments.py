"""Files that came with a case (`Attachment`): written once per source, read for those who may
open the case. A voice message's audio is fetched from the channel after the case is filed (the
WeChat sender fetches it from WeChat, which keeps it three days), a call's recording is written
by the phone line; either may arrive before or after the case row is visible, so an attachment
names its case by number."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.db import dialect_insert
from storage.models import Attachment, Case
from storage.types import utcnow

MAX_BYTES = 10 * 1024 * 1024  # a minute of telephone audio is about 1 MB


class TooLarge(ValueError):
    pass


@dataclass(frozen=True)
class Listed:
    """An attachment without its bytes (for a page)."""

    id: int
    kind: str
    content_type: str
    size: int
    created_at: datetime


def keep(
    session: Session,
    *,
    case_number: str | None,
    source: str,
    kind: str,
    content_type: str,
    data: bytes,
    now: datetime | None = None,
) -> bool:
    """Store ``data`` from ``source`` unless it is stored already; False when it was."""
    if len(data) > MAX_BYTES:
        raise TooLarge(f"{source}: {len(data)} bytes, more than {MAX_BYTES}")
    case_id = None
    if case_number:
        case_id = session.scalar(select(Case.id).where(Case.number == case_number))
    statement = (
        dialect_insert(session)(Attachment)
        .values(
            case_id=case_id,
            source=source,
            kind=kind,
            content_type=content_type,
            data=data,
            size=len(data),
            created_at=now or utcnow(),
        )
        .on_conflict_do_nothing(index_elements=["source"])
        .returning(Attachment.id)
    )
    return session.execute(statement).scalar() is not None


def of_case(session: Session, case_id: int) -> list[Listed]:
    rows = session.execute(
        select(
            Attachment.id,
            Attachment.kind,
            Attachment.content_type,
            Attachment.size,
            Attachment.created_at,
        )
        .where(Attachment.case_id == case_id)
        .order_by(Attachment.id)
    ).all()
    return [Listed(*row) for row in rows]
