"""Looking up units and staff by what people type: a code, a name. (A retiree by phone number:
`storage.identities.retiree_by_phone`.)"""

from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from storage.errors import NotFound
from storage.models import Staff, Unit


def find_unit(session: Session, code_or_name: str) -> Unit:
    """A unit by its code, Chinese name or English name (case-insensitive code)."""
    text = code_or_name.strip()
    units = session.scalars(
        select(Unit).where(
            or_(
                Unit.code == text,
                Unit.code == text.upper(),
                Unit.name_zh == text,
                Unit.name_en == text,
            )
        )
    ).all()
    if not units:
        raise NotFound(f"no unit with code or name {code_or_name!r}")
    if len(units) > 1:
        codes = ", ".join(u.code for u in units)
        raise NotFound(f"{code_or_name!r} names several units ({codes}); use the code")
    return units[0]


def find_staff(session: Session, username: str) -> Staff:
    staff = session.scalars(select(Staff).where(Staff.username == username)).first()
    if staff is None:
        raise NotFound(f"no user named {username!r}")
    return staff
