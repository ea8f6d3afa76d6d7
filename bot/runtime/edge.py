"""The app's edge, the middleware every request passes before any route: each request logged
once under a request id (`RequestLog`), and what no request may bring in refused.

A NUL character (U+0000) in a text: PostgreSQL cannot store one, so a sign-in name, a search, an
API field with one would fail deep inside with a 500 (SQLite stores it, hiding the problem
until the move to PostgreSQL). `RejectNul` answers 400, saying where it was: in the path or the
query string (``%00``), or in a form or JSON body (``%00``, ``\\u0000``). File uploads
(multipart) pass: a spreadsheet has NUL bytes of its own; the registry import reads its cells.

The providers' webhooks are not refused (a provider would deliver the message again, or drop
it): Twilio's form is cleaned once its signature is checked (bot/channels/twilio/signature.py),
Telegram's update once parsed (bot/channels/telegram/__init__.py), with
bot.channels.base.without_nul.
"""

from __future__ import annotations

import json
import time
import uuid

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bot.channels.base import NUL

log = structlog.get_logger(__name__)

# Bodies looked into: a form, JSON, plain text. (The others are files or nothing of ours.)
_TEXT_BODIES = (b"application/x-www-form-urlencoded", b"application/json", b"text/")
_NUL_SPELLINGS = (b"\x00", b"%00", b"\\u0000")


def _has_nul(raw: bytes) -> bool:
    lowered = raw.lower()
    return any(spelling in lowered for spelling in _NUL_SPELLINGS)


class RejectNul:
    """400 for a request with a NUL in its path, query string or text body, except under
    ``passing`` (the webhooks, which clean instead). Plain ASGI middleware (see RequestLog):
    a body it looked into is handed on unchanged."""

    def __init__(self, app: ASGIApp, *, passing: tuple[str, ...]) -> None:
        self.app = app
        self.passing = passing

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(self.passing):
            await self.app(scope, receive, send)
            return
        where = None
        if NUL in scope["path"] or _has_nul(scope.get("raw_path") or b""):
            where = "the path"
        elif _has_nul(scope.get("query_string", b"")):
            where = "the query string"
        body: list[Message] = []
        if where is None and _content_type(scope).startswith(_TEXT_BODIES):
            body = await _read_body(receive)
            if _has_nul(b"".join(m.get("body", b"") for m in body)):
                where = "the request body"
        if where is not None:
            await _refuse(send, f"a text may not contain the NUL character (U+0000): in {where}")
            return
        await self.app(scope, _replaying(body, receive) if body else receive, send)


def _content_type(scope: Scope) -> bytes:
    for key, value in scope["headers"]:
        if key == b"content-type":
            return bytes(value).lower()
    return b""


async def _read_body(receive: Receive) -> list[Message]:
    messages = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request" or not message.get("more_body", False):
            return messages


def _replaying(messages: list[Message], receive: Receive) -> Receive:
    """A receive that gives ``messages`` again, then whatever comes next (a disconnect)."""
    waiting = list(messages)

    async def replay() -> Message:
        return waiting.pop(0) if waiting else await receive()

    return replay


async def _refuse(send: Send, detail: str) -> None:
    content = json.dumps({"detail": detail}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(content)).encode()),
    ]
    await send({"type": "http.response.start", "status": 400, "headers": headers})
    await send({"type": "http.response.body", "body": content})


class RequestLog:
    """Logs each HTTP request once (method, path, status, ms) under a request id, which the
    response carries as x-request-id and every log line of the request shows (taken from the
    caller's x-request-id header when it sends one). Plain ASGI middleware: Starlette's
    BaseHTTPMiddleware (``@app.middleware("http")``) runs the rest of the app in a task of its
    own behind memory streams, a cost paid by every webhook."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _header(scope, b"x-request-id") or uuid.uuid4().hex[:16]
        status = 500  # unless the app starts a response
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [*message.get("headers", ()), (b"x-request-id", request_id.encode())]
                message = {**message, "headers": headers}
            await send(message)

        structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            structlog.contextvars.unbind_contextvars("request_id")
            log.info(
                "request",
                request_id=request_id,
                method=scope["method"],
                path=scope["path"],
                status=status,
                ms=round((time.perf_counter() - started) * 1000, 1),
            )


def _header(scope: Scope, name: bytes) -> str:
    """The first header ``name`` (lower case) of the request, or ""."""
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return ""
