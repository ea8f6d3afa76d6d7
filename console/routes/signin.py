"""`/`, sign-in, sign-out and the language switch."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from config.i18n import LANGUAGES
from console.auth import (
    SignInResult,
    check_csrf,
    csrf_token,
    end_session_of,
    sign_in,
    signed_in,
    start_session,
)
from console.web import DB, console, language, render
from storage.audit import record_access
from storage.models import Staff

router = APIRouter(include_in_schema=False)


def safe_next(target: str | None, default: str = "/queue") -> str:
    """Only a path of this site: never an open redirect to somewhere else."""
    if not target:
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return default
    return target


@router.get("/")
def home(request: Request) -> Response:
    if isinstance(request.session.get("sid"), str):
        return RedirectResponse("/queue", status_code=303)
    return RedirectResponse("/login", status_code=303)


@router.get("/login")
def login_page(request: Request, next: str | None = None) -> Response:
    csrf_token(request)
    return render(request, "login.html", {"next": safe_next(next), "error": None})


@router.post("/login", dependencies=[Depends(check_csrf)])
def login(
    request: Request,
    username: Annotated[str, Form(max_length=64)],
    password: Annotated[str, Form(max_length=200)],
    session: DB,
    next: Annotated[str, Form(max_length=500)] = "/queue",
) -> Response:
    config = console(request)
    attempt = sign_in(session, config.settings, username, password)
    if attempt.result is SignInResult.OK and attempt.staff is not None:
        start_session(request, session, attempt.staff)
        return RedirectResponse(safe_next(next), status_code=303)
    lang = language(request)
    if attempt.result is SignInResult.INACTIVE:  # said only to whoever knows the password
        error = config.catalogs.text("console.signin.inactive", lang)
    else:
        # A locked account gets the answer an unknown name or a wrong password gets, so the
        # answer does not tell which names exist; it says that accounts lock.
        limits = config.settings
        error = config.catalogs.text(
            "console.signin.wrong",
            lang,
            tries=str(limits.max_failed_logins),
            minutes=str(limits.lock_minutes),
        )
    # The failure counts are committed with the answer (the request's transaction).
    return render(
        request,
        "login.html",
        {"next": safe_next(next), "error": error, "username": username},
        status_code=403 if attempt.result is SignInResult.INACTIVE else 401,
    )


@router.post("/logout", dependencies=[Depends(check_csrf)])
def logout(
    request: Request,
    staff: Annotated[Staff, Depends(signed_in)],
    session: DB,
) -> Response:
    record_access(
        session,
        actor=staff,
        actor_label=staff.role.value,
        action="sign_out",
        subject_type="staff",
        subject_id=staff.id,
    )
    end_session_of(request, session)
    return RedirectResponse("/login", status_code=303)


@router.get("/language/{code}")
def switch_language(request: Request, code: str, next: str | None = None) -> Response:
    """中文 / English: kept in the session, for every page after this one."""
    if code in LANGUAGES:
        request.session["lang"] = code
    return RedirectResponse(safe_next(next, "/"), status_code=303)
