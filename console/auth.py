"""Signing in to the console: passwords (argon2), the session cookie, CSRF, and the lock after
repeated failures.

- The session is a signed cookie (Starlette's SessionMiddleware, itsdangerous): it holds the
  token of a row in ``console_sessions`` (storage/tokens.py), a fingerprint of the person's
  password hash, the CSRF token and the page language. Nothing personal. Signing out, a
  password reset (`hotline users reset-password`, or the hash changed any other way) and
  switching the account off (`hotline users disable`) end the session on every server: each
  request reads the row, so a saved copy of the cookie is refused.
- Every form and every htmx request carries the CSRF token (a hidden field or the X-CSRF-Token
  header); a POST without the session's token is refused with 403.
- ``max_failed_logins`` wrong passwords in a row lock the account for ``lock_minutes``; a correct
  password during the lock is refused too. Unknown names get the same answer as wrong passwords,
  after the same work (a hash is checked either way).
- Every sign-in, failure, lock and sign-out is in the audit log.
- Programs use a personal token instead (``Authorization: Bearer hlt_...``, made with `hotline
  users token`): one kind of token for every JSON route (/api/v1/cases, /api/v1/messages,
  /nlu/parse), acting as the person who made it (`token_holder`).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from config.settings import Settings
from console.web import DB, console
from storage.audit import record_access
from storage.models import Role, Staff
from storage.passwords import hash_password, verify_password
from storage.tokens import SIGNED_OUT, end_session, holder_of, live_session, open_session
from storage.types import utcnow

SESSION_COOKIE = "hotline_session"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"


@cache
def _dummy_hash() -> str:
    """Checked when the name is unknown, so a wrong name takes as long as a wrong password."""
    return hash_password(secrets.token_urlsafe(16))


def secret_key(settings: Settings) -> str:
    """The key that signs session cookies: HOTLINE_SECRET_KEY, or one made once and kept in
    data_dir/secret_key (readable by the owner only) so restarts keep people signed in."""
    if settings.secret_key:
        return settings.secret_key
    path = Path(settings.data_dir) / "secret_key"
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(key)
    return key


@dataclass(frozen=True)
class Me:
    """Who is signed in, as the page header shows it: kept apart from the database objects,
    which an error page may no longer load (the request's transaction was rolled back)."""

    id: int
    name: str
    role: Role


def fingerprint(staff: Staff) -> str:
    """Changes when the password changes: old sessions stop working after a reset."""
    return hashlib.sha256((staff.password_hash or "").encode()).hexdigest()[:16]


class SignInResult(StrEnum):
    OK = "ok"
    WRONG = "wrong"  # unknown name or wrong password: the same answer
    LOCKED = "locked"
    INACTIVE = "inactive"


@dataclass(frozen=True)
class Attempt:
    result: SignInResult
    staff: Staff | None = None
    locked_until: datetime | None = None


def sign_in(
    session: Session,
    settings: Settings,
    username: str,
    password: str,
    *,
    now: datetime | None = None,
) -> Attempt:
    """Check a name and password, counting failures; the caller commits what this records."""
    now = now or utcnow()
    staff = session.scalars(
        select(Staff).where(Staff.username == username.strip()).with_for_update()
    ).one_or_none()
    if staff is None or not staff.password_hash:
        verify_password(_dummy_hash(), password)
        record_access(
            session,
            actor=None,
            actor_label="console",
            action="sign_in_failed",
            subject_type="staff",
            subject_id=staff.id if staff is not None else None,
            detail={"reason": "unknown name" if staff is None else "no password"},
        )
        return Attempt(SignInResult.WRONG)
    if staff.locked_until is not None and staff.locked_until > now:
        verify_password(_dummy_hash(), password)
        _audit(session, staff, "sign_in_refused", {"reason": "locked"})
        return Attempt(SignInResult.LOCKED, locked_until=staff.locked_until)
    if not verify_password(staff.password_hash, password):
        staff.failed_logins += 1
        detail: dict[str, object] = {"failures": staff.failed_logins}
        if staff.failed_logins >= settings.max_failed_logins:
            staff.locked_until = now + timedelta(minutes=settings.lock_minutes)
            staff.failed_logins = 0
            _audit(session, staff, "account_locked", {"minutes": settings.lock_minutes})
            return Attempt(SignInResult.LOCKED, locked_until=staff.locked_until)
        _audit(session, staff, "sign_in_failed", detail)
        return Attempt(SignInResult.WRONG)
    if not staff.active:
        _audit(session, staff, "sign_in_refused", {"reason": "inactive"})
        return Attempt(SignInResult.INACTIVE)
    staff.failed_logins = 0
    staff.locked_until = None
    _audit(session, staff, "sign_in", {})
    return Attempt(SignInResult.OK, staff=staff)


def _audit(session: Session, staff: Staff, action: str, detail: dict[str, object]) -> None:
    record_access(
        session,
        actor=staff,
        actor_label=staff.role.value,
        action=action,
        subject_type="staff",
        subject_id=staff.id,
        detail=detail,
    )


def start_session(request: Request, db: Session, staff: Staff) -> None:
    """A fresh session for ``staff`` (a new CSRF token too: nothing carries over from before)."""
    lang = request.session.get("lang")
    request.session.clear()
    request.session.update(
        sid=open_session(db, staff, now=utcnow()),
        fp=fingerprint(staff),
        csrf=secrets.token_urlsafe(32),
    )
    if lang:
        request.session["lang"] = lang


def end_session_of(request: Request, db: Session) -> None:
    """Sign-out: the session ends on every server, and the cookie is emptied (but its
    language)."""
    token = request.session.get("sid")
    if isinstance(token, str):
        end_session(db, token, SIGNED_OUT, now=utcnow())
    lang = request.session.get("lang")
    request.session.clear()
    if lang:
        request.session["lang"] = lang


def csrf_token(request: Request) -> str:
    """The session's CSRF token, made on first use (the sign-in form needs one too)."""
    token = request.session.get("csrf")
    if not token:
        token = request.session["csrf"] = secrets.token_urlsafe(32)
    return str(token)


class SignInRequired(Exception):
    """Nobody (or nobody valid any more) is signed in: the page sends them to sign in."""


class CsrfRefused(Exception):
    """A form or htmx request came without this session's CSRF token."""


async def check_csrf(request: Request) -> None:
    """For every state-changing request: the token in the header or the form must match."""
    expected = request.session.get("csrf")
    given = request.headers.get(CSRF_HEADER)
    if given is None:
        content_type = request.headers.get("content-type", "")
        if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            form = await request.form()
            value = form.get(CSRF_FIELD)
            given = value if isinstance(value, str) else None
    if not expected or not given or not hmac.compare_digest(str(expected), given):
        raise CsrfRefused()


def signed_in(request: Request, session: DB) -> Staff:
    """The person signed in to this session, with their units; raises SignInRequired."""
    token = request.session.get("sid")
    if not isinstance(token, str):
        raise SignInRequired()
    max_age = timedelta(hours=console(request).settings.session_hours)
    row = live_session(session, token, now=utcnow(), max_age=max_age)
    if row is None or not hmac.compare_digest(
        str(request.session.get("fp", "")), fingerprint(row.staff)
    ):
        request.session.clear()
        raise SignInRequired()
    staff = row.staff
    request.state.me = Me(id=staff.id, name=staff.name, role=staff.role)
    return staff


_BEARER = HTTPBearer(auto_error=False)


def token_holder(
    session: DB,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)],
) -> Staff:
    """FastAPI dependency: the active person whose unrevoked personal token the request
    carries; 401 otherwise."""
    given = credentials.credentials if credentials is not None else ""
    staff = holder_of(session, given, now=utcnow())
    if staff is None:
        raise _no_token()
    return staff


def staff_token(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)],
) -> None:
    """FastAPI dependency for a route that does its own database work (a conversation turn):
    the request carries the personal token of an active staff member or admin (401, or 403 for
    a volunteer's), checked in a short transaction of its own so that it holds nothing while
    the route runs (SQLite has one writer at a time)."""
    _check_token(request, credentials, staff_only=True)


def any_token(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)],
) -> None:
    """As `staff_token`, for any active person's token (a volunteer's too)."""
    _check_token(request, credentials, staff_only=False)


def _no_token() -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED,
        detail="a valid personal token is required (Authorization: Bearer <token>)",
        headers={"WWW-Authenticate": "Bearer"},
    )


def _check_token(
    request: Request, credentials: HTTPAuthorizationCredentials | None, *, staff_only: bool
) -> None:
    given = credentials.credentials if credentials is not None else ""
    factory: sessionmaker[Session] = request.app.state.console_sessions
    with factory.begin() as session:
        holder = holder_of(session, given, now=utcnow())
        role = holder.role if holder is not None else None
    if role is None:
        raise _no_token()
    if staff_only and role == Role.VOLUNTEER:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="a staff member's token is required")
