"""Case numbers people can read aloud and type: YEAR-NNNNNN, unique and never reused."""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.orm import Session

from storage.db import dialect_insert
from storage.models import CaseNumberCounter


def next_case_number(session: Session, year: int) -> str:
    """Take the next number of ``year``. The counter row stays locked until the caller commits,
    so two transactions never get the same number; a rolled-back number is simply skipped."""
    table = CaseNumberCounter.__table__
    insert = dialect_insert(session)
    session.execute(insert(table).values(year=year, last=0).on_conflict_do_nothing())
    last = session.execute(
        update(table)
        .where(table.c.year == year)
        .values(last=table.c.last + 1)
        .returning(table.c.last)
    ).scalar_one()
    return format_case_number(year, last)


def format_case_number(year: int, sequence: int) -> str:
    return f"{year}-{sequence:06d}"
