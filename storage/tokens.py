"""Personal tokens for the JSON API and the console's sessions: made here, stored only as a
SHA-256 hash."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from typing import TypeVar

from sqlalchemy import select, update
from sqlalchemy.orm import Session, selectinload

from storage.models import ApiToken, ConsoleSession, Staff

TOKEN_PREFIX = "hlt_"  # lets secret scanners recognise a leaked token

_Held = TypeVar("_Held", ApiToken, ConsoleSession)  # a token someone holds, kept as its hash


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """Tokens are long and random, so a plain SHA-256 is enough (no salt or slow hash needed)."""
    return hashlib.sha256(token.encode()).hexdigest()


def _by_hash(session: Session, kind: type[_Held], token: str) -> _Held | None:
    """The row of ``kind`` whose token is ``token``, with its person and their units."""
    return session.scalars(
        select(kind)
        .where(kind.token_hash == hash_token(token))
        .options(selectinload(kind.staff).selectinload(Staff.units))
    ).one_or_none()


def holder_of(session: Session, token: str, *, now: datetime) -> Staff | None:
    """The active person whose unrevoked personal token ``token`` is, with their units; None
    otherwise. Looked up by its hash: equal hashes mean equal tokens, and the lookup reveals
    nothing. The token's last use is noted."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    row = _by_hash(session, ApiToken, token)
    if row is None or row.revoked_at is not None or not row.staff.active:
        return None
    row.last_used_at = now
    return row.staff


# -- console sessions --------------------------------------------------------------------------

SIGNED_OUT, PASSWORD_RESET, SWITCHED_OFF, EXPIRED = "signed_out", "password_reset", "off", "expired"


def open_session(session: Session, staff: Staff, *, now: datetime) -> str:
    """A new console session of ``staff``; returns its token (for the cookie only)."""
    token = secrets.token_urlsafe(32)
    session.add(ConsoleSession(staff_id=staff.id, token_hash=hash_token(token), created_at=now))
    return token


def live_session(
    session: Session, token: str, *, now: datetime, max_age: timedelta
) -> ConsoleSession | None:
    """The session of ``token`` with its person and their units, if it has not ended, is
    younger than ``max_age`` and its person is active; None otherwise (an expired one is
    ended on the way)."""
    row = _by_hash(session, ConsoleSession, token)
    if row is None or row.ended_at is not None or not row.staff.active:
        return None
    if row.created_at <= now - max_age:
        row.ended_at, row.ended_why = now, EXPIRED
        return None
    return row


def end_session(session: Session, token: str, why: str, *, now: datetime) -> bool:
    """End the session of ``token`` (sign-out). True when it was live."""
    ended = session.execute(
        update(ConsoleSession)
        .where(ConsoleSession.token_hash == hash_token(token), ConsoleSession.ended_at.is_(None))
        .values(ended_at=now, ended_why=why)
    )
    return bool(ended.rowcount)


def end_sessions_of(session: Session, staff_id: int, why: str, *, now: datetime) -> int:
    """End every live console session of ``staff_id`` (a password reset, the account switched
    off); returns how many."""
    ended = session.execute(
        update(ConsoleSession)
        .where(ConsoleSession.staff_id == staff_id, ConsoleSession.ended_at.is_(None))
        .values(ended_at=now, ended_why=why)
    )
    return int(ended.rowcount or 0)


def revoke_tokens_of(session: Session, staff_id: int, *, now: datetime) -> int:
    """Revoke every API token of ``staff_id`` (the account switched off); returns how many."""
    revoked = session.execute(
        update(ApiToken)
        .where(ApiToken.staff_id == staff_id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return int(revoked.rowcount or 0)
