"""The staff and volunteer console, served by the same app as the webhooks: queues, cases, the
registry and reports (server-rendered pages with htmx), and a JSON API under /api/v1."""

from __future__ import annotations

import structlog
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy import Engine
from sqlalchemy.orm import sessionmaker
from starlette.middleware.sessions import SessionMiddleware

from bot.conversation.deployment import Deployment
from console.auth import SESSION_COOKIE, CsrfRefused, SignInRequired, secret_key
from console.flash import flash, go
from console.web import STATIC, ConsoleConfig, is_htmx, render
from storage.db import DATABASE_DOWN
from storage.errors import CaseError, InvalidCaseInput, NotFound, NotPermitted
from storage.escalation import MovedHook

DATABASE_DOWN_DETAIL = "the database cannot be reached; nothing was done; try again shortly"
RETRY_AFTER_S = 5

log = structlog.get_logger(__name__)

# Refusals by the case actions, by their stable code, as catalog keys.
ERROR_KEYS = {
    "illegal_transition": "console.errors.illegal_transition",
    "not_permitted": "console.errors.not_permitted",
    "conflict": "console.errors.conflict",
    "invalid_input": "console.errors.invalid_input",
    "not_found": "console.errors.not_found",
}


def mount_console(
    app: FastAPI, deployment: Deployment, *, on_moved: MovedHook | None = None
) -> None:
    """Add the console's pages, static files, session cookie and error pages to ``app``.
    ``on_moved``: told of a case a transfer moved to another unit's queue (the app gives the
    channels' announcer, bot.channels.moved_announcer)."""
    from console import api
    from console.routes import campaigns, care, cases, queue, registry, reports, signin

    settings = deployment.settings
    app.state.console = ConsoleConfig.load(deployment, on_moved)
    app.add_middleware(
        SessionMiddleware,
        secret_key=secret_key(settings),
        session_cookie=SESSION_COOKIE,
        max_age=settings.session_hours * 3600,
        same_site="lax",
        https_only=settings.public_url.startswith("https://"),
    )
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    for module in (signin, queue, cases, reports, registry, care, campaigns):
        app.include_router(module.router)
    app.include_router(api.router)
    app.add_exception_handler(SignInRequired, _sign_in_required)
    app.add_exception_handler(CsrfRefused, _csrf_refused)
    app.add_exception_handler(CaseError, _case_error)
    # The whole app's, not only the console's: Twilio's webhooks answer for themselves
    # (bot/channels/twilio/outage.py) and Telegram's says 503 itself.
    for failure in DATABASE_DOWN:
        app.add_exception_handler(failure, _database_down)


def bind_engine(app: FastAPI, engine: Engine) -> None:
    """Called at start-up once the database engine exists."""
    app.state.console_sessions = sessionmaker(engine, expire_on_commit=False)


async def _sign_in_required(request: Request, exc: Exception) -> Response:
    target = "/login?next=" + request.url.path if request.method == "GET" else "/login"
    if is_htmx(request):
        return Response(status_code=401, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


async def _csrf_refused(request: Request, exc: Exception) -> Response:
    return render(request, "error.html", {"key": "console.errors.csrf"}, status_code=403)


async def _database_down(request: Request, exc: Exception) -> Response:
    """The database cannot be reached: 503 saying so (nothing was done; try again shortly),
    a page for a person at the console, JSON for a program; not a bare 500."""
    log.warning("database_unreachable", path=request.url.path, error=type(exc).__name__)
    headers = {"Retry-After": str(RETRY_AFTER_S)}
    wants_page = "text/html" in request.headers.get("accept", "")
    if request.url.path.startswith("/api/") or not wants_page or is_htmx(request):
        body = {"error": "database_unavailable", "detail": DATABASE_DOWN_DETAIL}
        return JSONResponse(body, status_code=503, headers=headers)
    context = {"key": "console.errors.database_down"}
    return render(request, "error.html", context, status_code=503, headers=headers)


async def _case_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, CaseError)
    key = ERROR_KEYS.get(exc.code, "console.errors.invalid_input")
    if request.url.path.startswith("/api/"):
        status = {NotFound: 404, NotPermitted: 403, InvalidCaseInput: 422}.get(type(exc), 409)
        return JSONResponse({"error": exc.code, "detail": str(exc)}, status_code=status)
    if request.method == "GET":
        status = 404 if isinstance(exc, NotFound) else 403
        # The page says it in the person's language; the developer's words go to the log.
        log.info("console_refused", path=request.url.path, code=exc.code, detail=str(exc)[:300])
        return render(request, "error.html", {"key": key}, status_code=status)
    # A refused form: back to the page it came from, saying why in the person's language (a
    # missing field by name); the developer's words go to the log.
    log.info("console_refused", path=request.url.path, code=exc.code, detail=str(exc)[:300])
    if isinstance(exc, InvalidCaseInput) and exc.key:
        flash(request, "error", exc.key, **exc.params)
    else:
        flash(request, "error", key)
    back = request.url.path.rsplit("/", 1)[0]
    if isinstance(exc, NotPermitted) or not back.startswith("/cases/"):
        back = "/queue"
    return go(request, back)
