"""A fake Telegram Bot API: a real HTTP server on 127.0.0.1 that records every call.

Point python-telegram-bot (or any HTTP client) at ``fake.url`` as the Bot API base
(``Settings(telegram_api_url=fake.url)``; the library then calls
``{fake.url}/bot{token}/{method}``)::

    with FakeTelegramApi(token="123:ABC") as fake:
        ...  # start the app / sender with telegram_api_url=fake.url
        fake.calls_to("sendMessage")         # [{"chat_id": 7, "text": "...", ...}, ...]
        fake.push(fake.text_update(7, "/start"))  # POST to the webhook set with setWebhook

Methods answered (anything else gets 404 ``{"ok": false, ...}`` and is still recorded):
getMe, setWebhook, deleteWebhook, getWebhookInfo, sendMessage, editMessageText,
editMessageReplyMarkup, answerCallbackQuery, setMyCommands, getUpdates (long polling of the
updates given to ``queue_update``; waits at most ``max_poll_wait_s``).

Recording. Each call is a ``Call(method, params, token)``; ``params`` are decoded the way the
library sends them (form fields: text values raw, other values JSON-encoded): a value that starts
with ``{`` or ``[`` is decoded as JSON (``reply_markup`` becomes a dict), the id-like fields
(``chat_id``, ``message_id``, ``offset``, ...) become ints when they are numeric, ``true`` /
``false`` of the flag fields become bools, and everything else (``text``!) stays a string. A JSON
body (``Content-Type: application/json``) is accepted too.

- ``calls`` (a copy of all calls, in order), ``calls_to(method)`` (their params),
  ``wait_for(method, count=1, timeout=5)`` (waits until ``count`` calls arrived; returns params)
  and ``clear()``.
- ``messages``: ``{(chat_id, message_id): message dict}`` as sent and later edited, so a test
  sees the current text of a message after ``editMessageText``. Editing an unknown message gives
  400 "Bad Request: message to edit not found", editing to the same text and markup gives 400
  "Bad Request: message is not modified" (as Telegram does).
- ``fail(method, error_code=..., description=..., retry_after=None, times=1)``: the next
  ``times`` calls of ``method`` fail with that Bot API error (e.g. 429 with
  ``parameters.retry_after``, 403 "Forbidden: bot was blocked by the user", 400 "Bad Request:
  chat not found"); python-telegram-bot turns these into RetryAfter / Forbidden / BadRequest.
- ``webhook``: ``{"url", "secret_token", "allowed_updates"}`` from the last setWebhook (None after
  deleteWebhook).
- ``never_started(user_id, ...)``: as for a person who never opened a private chat with the bot,
  sendMessage to their private chat fails with 403 "Forbidden: bot can't initiate conversation
  with a user" until a private message of theirs is built with ``text_update`` (their /start).
- answerCallbackQuery refuses a ``url`` other than ``https://t.me/<bot username>?start=...``
  (400 "Bad Request: URL_INVALID"), as Telegram does outside games.

Updates. ``text_update(user_id, text)``, ``contact_update(user_id, phone, contact_user_id=...)``,
``callback_update(user_id, data, message=...)`` build update dicts with fresh ``update_id``s
(``message`` is a message dict, e.g. ``fake.sent_message(...)`` or one from ``messages``);
``chat_id`` defaults to the user's private chat (= user id); a negative chat id is a group.
``migrate_update(old_chat_id, new_chat_id)``: the service message a group gets when Telegram
turns it into a supergroup (``migrate_to_chat_id``).
``push(update, url=None, secret=None)`` POSTs one to the webhook with the
``X-Telegram-Bot-Api-Secret-Token`` header (the URL and secret given to setWebhook unless
overridden; ``secret=""`` sends no header) and returns the ``httpx.Response``;
``push_together(updates)`` POSTs several at the same moment from threads (released by one
barrier) and returns the responses in order. ``queue_update(update)`` offers one to getUpdates.

``serve_in_thread(asgi_app, sock=None)`` runs an ASGI app under uvicorn on 127.0.0.1 in a thread
(a context manager giving its base URL, lifespan included); it serves this fake and is meant for
the app under test as well. ``bound_socket()`` gives a socket and its URL first, for an app that
must know its own URL (``public_url``) before it starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

BOT_ID = 123
BOT_USERNAME = "hotline_test_bot"

_INT_FIELDS = frozenset(
    {
        "chat_id",
        "message_id",
        "reply_to_message_id",
        "offset",
        "limit",
        "timeout",
        "cache_time",
        "user_id",
        "max_connections",
        "message_thread_id",
    }
)
_BOOL_FIELDS = frozenset(
    {"show_alert", "drop_pending_updates", "disable_notification", "protect_content"}
)


@dataclass(frozen=True)
class Call:
    method: str
    params: dict[str, Any]
    token: str


@dataclass
class _Failure:
    error_code: int
    description: str
    retry_after: int | None
    times: int


def decode_param(name: str, raw: str) -> Any:
    """One form value as python-telegram-bot meant it (see the module docstring)."""
    if raw[:1] in ("{", "["):
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    if name in _INT_FIELDS and raw.lstrip("-").isdigit():
        return int(raw)
    if name in _BOOL_FIELDS and raw in ("true", "false"):
        return raw == "true"
    return raw


def bound_socket() -> tuple[socket.socket, str]:
    """A socket bound to a free port of 127.0.0.1 and its URL: for an app that must know its
    own URL before it starts (give the socket to ``serve_in_thread``)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock, f"http://127.0.0.1:{sock.getsockname()[1]}"


@contextlib.contextmanager
def serve_in_thread(
    app: Any, *, sock: socket.socket | None = None, log_level: str = "warning"
) -> Iterator[str]:
    """Run ``app`` (ASGI) with uvicorn on 127.0.0.1 in a thread (on ``sock``, or a free port);
    yields its URL. The app's lifespan runs: startup before the URL is given, shutdown on exit
    (a failed startup raises here)."""
    if sock is None:
        sock, url = bound_socket()
    else:
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    config = uvicorn.Config(app, log_level=log_level, lifespan="on", timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        if not thread.is_alive():
            sock.close()
            raise RuntimeError("the server stopped while starting (see the log)")
        if time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError("the server did not start within 120 s")
        time.sleep(0.01)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


class FakeTelegramApi:
    """The fake Bot API server (see the module docstring)."""

    def __init__(self, token: str = "123:ABC", *, max_poll_wait_s: float = 0.5) -> None:
        self.token = token
        self.max_poll_wait_s = max_poll_wait_s
        self.url = ""
        self.webhook: dict[str, Any] | None = None
        self.messages: dict[tuple[int, int], dict[str, Any]] = {}
        self._calls: list[Call] = []
        self._failures: dict[str, _Failure] = {}
        self._updates: list[dict[str, Any]] = []
        self._strangers: set[int] = set()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._update_ids = itertools.count(1000)
        self._message_ids = itertools.count(1)
        self._ctx: contextlib.AbstractContextManager[str] | None = None
        self.app = Starlette(
            routes=[
                Route("/bot{token}/{method}", self._endpoint, methods=["GET", "POST"]),
                Route("/file/bot{token}/{path:path}", self._file, methods=["GET"]),
            ]
        )

    # -- lifecycle -----------------------------------------------------------------------------

    def __enter__(self) -> FakeTelegramApi:
        self._ctx = serve_in_thread(self.app)
        self.url = self._ctx.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._ctx is not None
        self._ctx.__exit__(None, None, None)

    # -- what was called -----------------------------------------------------------------------

    @property
    def calls(self) -> list[Call]:
        with self._lock:
            return list(self._calls)

    def calls_to(self, method: str) -> list[dict[str, Any]]:
        with self._lock:
            return [c.params for c in self._calls if c.method == method]

    def wait_for(self, method: str, count: int = 1, timeout: float = 5.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [c.params for c in self._calls if c.method == method]
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{count} call(s) of {method} expected, got {len(found)}")
                self._changed.wait(left)

    def clear(self) -> None:
        with self._lock:
            self._calls.clear()

    def fail(
        self,
        method: str,
        *,
        error_code: int = 500,
        description: str = "Internal Server Error",
        retry_after: int | None = None,
        times: int = 1,
    ) -> None:
        with self._lock:
            self._failures[method] = _Failure(error_code, description, retry_after, times)

    def never_started(self, *user_ids: int) -> None:
        with self._lock:
            self._strangers.update(user_ids)

    # -- updates -------------------------------------------------------------------------------

    def next_update_id(self) -> int:
        return next(self._update_ids)

    @staticmethod
    def user(user_id: int, first_name: str = "", language_code: str = "zh-hans") -> dict[str, Any]:
        return {
            "id": user_id,
            "is_bot": False,
            "first_name": first_name or f"User{user_id}",
            "language_code": language_code,
        }

    @staticmethod
    def chat(chat_id: int) -> dict[str, Any]:
        if chat_id < 0:
            return {"id": chat_id, "type": "group", "title": f"Group {chat_id}"}
        return {"id": chat_id, "type": "private", "first_name": f"User{chat_id}"}

    def _message(self, user_id: int, chat_id: int | None, **content: Any) -> dict[str, Any]:
        chat = chat_id if chat_id is not None else user_id
        return {
            "message_id": next(self._message_ids),
            "date": int(time.time()),
            "chat": self.chat(chat),
            "from": self.user(user_id),
            **content,
        }

    def text_update(
        self, user_id: int, text: str, *, chat_id: int | None = None, update_id: int | None = None
    ) -> dict[str, Any]:
        """A message with ``text``; a leading ``/command`` gets its bot_command entity."""
        content: dict[str, Any] = {"text": text}
        if text.startswith("/"):
            length = len(text.split()[0])
            content["entities"] = [{"type": "bot_command", "offset": 0, "length": length}]
        if chat_id is None or chat_id == user_id:
            with self._lock:
                self._strangers.discard(user_id)  # they opened the chat: the bot may write
        return {
            "update_id": update_id if update_id is not None else self.next_update_id(),
            "message": self._message(user_id, chat_id, **content),
        }

    def contact_update(
        self,
        user_id: int,
        phone_number: str,
        *,
        contact_user_id: int | None = None,
        first_name: str = "",
        chat_id: int | None = None,
    ) -> dict[str, Any]:
        """A shared contact; ``contact_user_id`` is whose contact it is (None: not a Telegram
        user, as for a contact from the address book)."""
        contact: dict[str, Any] = {"phone_number": phone_number, "first_name": first_name or "X"}
        if contact_user_id is not None:
            contact["user_id"] = contact_user_id
        return {
            "update_id": self.next_update_id(),
            "message": self._message(user_id, chat_id, contact=contact),
        }

    def migrate_update(self, old_chat_id: int, new_chat_id: int) -> dict[str, Any]:
        """The group ``old_chat_id`` became the supergroup ``new_chat_id``."""
        message = self._message(BOT_ID, old_chat_id, migrate_to_chat_id=new_chat_id)
        return {"update_id": self.next_update_id(), "message": message}

    def callback_update(
        self, user_id: int, data: str, *, message: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """A button press on ``message`` (a message the bot sent: see ``messages``)."""
        query: dict[str, Any] = {
            "id": f"cq{self.next_update_id()}",
            "from": self.user(user_id),
            "chat_instance": f"ci{user_id}",
            "data": data,
        }
        if message is not None:
            query["message"] = message
        return {"update_id": self.next_update_id(), "callback_query": query}

    def sent_message(self, chat_id: int, index: int = -1) -> dict[str, Any]:
        """A message the bot sent to ``chat_id`` (the last one by default), as it is now."""
        found = [m for (chat, _), m in sorted(self.messages.items()) if chat == chat_id]
        return found[index]

    def push(
        self,
        update: dict[str, Any],
        *,
        url: str | None = None,
        secret: str | None = None,
        timeout: float = 60.0,
    ) -> httpx.Response:
        target = url or (self.webhook or {}).get("url")
        if not target:
            raise AssertionError("no webhook was set: give url=")
        token = secret if secret is not None else (self.webhook or {}).get("secret_token", "")
        headers = {"X-Telegram-Bot-Api-Secret-Token": token} if token else {}
        return httpx.post(target, json=update, headers=headers, timeout=timeout)

    def push_together(self, updates: list[dict[str, Any]], **kwargs: Any) -> list[httpx.Response]:
        barrier = threading.Barrier(len(updates))

        def one(update: dict[str, Any]) -> httpx.Response:
            barrier.wait()
            return self.push(update, **kwargs)

        with ThreadPoolExecutor(len(updates)) as pool:
            return list(pool.map(one, updates))

    def queue_update(self, update: dict[str, Any]) -> None:
        with self._changed:
            self._updates.append(update)
            self._changed.notify_all()

    # -- the server ----------------------------------------------------------------------------

    async def _file(self, request: Request) -> JSONResponse:
        return JSONResponse({"ok": False, "error_code": 404, "description": "Not Found"}, 404)

    async def _endpoint(self, request: Request) -> JSONResponse:
        token, method = request.path_params["token"], request.path_params["method"]
        params = await _read_params(request)
        with self._changed:
            self._calls.append(Call(method, params, token))
            self._changed.notify_all()
            failure = self._failures.get(method)
            if failure is not None:
                failure.times -= 1
                if failure.times <= 0:
                    del self._failures[method]
        if token != self.token:
            return _error(401, "Unauthorized")
        if failure is not None:
            extra = {"retry_after": failure.retry_after} if failure.retry_after else None
            return _error(failure.error_code, failure.description, extra)
        handler = getattr(self, f"_do_{method}", None)
        if handler is None:
            return _error(404, "Not Found")
        if method == "getUpdates":
            return await self._do_getUpdates(params)
        with self._lock:
            return handler(params)

    def _do_getMe(self, params: dict[str, Any]) -> JSONResponse:
        return _ok(
            {
                "id": BOT_ID,
                "is_bot": True,
                "first_name": "Hotline",
                "username": BOT_USERNAME,
                "can_join_groups": True,
                "can_read_all_group_messages": False,
                "supports_inline_queries": False,
            }
        )

    def _do_setWebhook(self, params: dict[str, Any]) -> JSONResponse:
        if not str(params.get("url", "")).startswith("http"):
            return _error(400, "Bad Request: bad webhook: an HTTPS URL must be provided")
        self.webhook = {
            "url": params["url"],
            "secret_token": params.get("secret_token", ""),
            "allowed_updates": params.get("allowed_updates"),
        }
        return _ok(True)

    def _do_deleteWebhook(self, params: dict[str, Any]) -> JSONResponse:
        self.webhook = None
        return _ok(True)

    def _do_getWebhookInfo(self, params: dict[str, Any]) -> JSONResponse:
        url = (self.webhook or {}).get("url", "")
        return _ok({"url": url, "has_custom_certificate": False, "pending_update_count": 0})

    def _do_setMyCommands(self, params: dict[str, Any]) -> JSONResponse:
        return _ok(True)

    def _do_sendMessage(self, params: dict[str, Any]) -> JSONResponse:
        chat_id = params.get("chat_id")
        if not isinstance(chat_id, int):
            return _error(400, "Bad Request: chat not found")
        if chat_id in self._strangers:
            return _error(403, "Forbidden: bot can't initiate conversation with a user")
        text = str(params.get("text", ""))
        if not text.strip():
            return _error(400, "Bad Request: message text is empty")
        problem = _check_markup(params.get("reply_markup"))
        if problem:
            return _error(400, f"Bad Request: {problem}")
        message: dict[str, Any] = {
            "message_id": next(self._message_ids),
            "date": int(time.time()),
            "chat": self.chat(chat_id),
            "from": {"id": BOT_ID, "is_bot": True, "first_name": "Hotline"},
            "text": text,
        }
        markup = params.get("reply_markup")
        if isinstance(markup, dict) and "inline_keyboard" in markup:
            message["reply_markup"] = markup
        self.messages[(chat_id, message["message_id"])] = message
        return _ok(message)

    def _do_editMessageText(self, params: dict[str, Any]) -> JSONResponse:
        key = (params.get("chat_id"), params.get("message_id"))
        message = self.messages.get(key)  # type: ignore[arg-type]
        if message is None:
            return _error(400, "Bad Request: message to edit not found")
        markup = params.get("reply_markup")
        problem = _check_markup(markup)
        if problem:
            return _error(400, f"Bad Request: {problem}")
        new_markup = markup if isinstance(markup, dict) else None
        if message["text"] == params.get("text") and message.get("reply_markup") == new_markup:
            return _error(
                400,
                "Bad Request: message is not modified: specified new message content and reply "
                "markup are exactly the same as a current content and reply markup of the message",
            )
        message["text"] = str(params.get("text", ""))
        message["edit_date"] = int(time.time())
        if new_markup is None:
            message.pop("reply_markup", None)
        else:
            message["reply_markup"] = new_markup
        return _ok(message)

    def _do_editMessageReplyMarkup(self, params: dict[str, Any]) -> JSONResponse:
        key = (params.get("chat_id"), params.get("message_id"))
        message = self.messages.get(key)  # type: ignore[arg-type]
        if message is None:
            return _error(400, "Bad Request: message to edit not found")
        markup = params.get("reply_markup")
        if isinstance(markup, dict):
            message["reply_markup"] = markup
        else:
            message.pop("reply_markup", None)
        return _ok(message)

    def _do_answerCallbackQuery(self, params: dict[str, Any]) -> JSONResponse:
        if len(str(params.get("text", ""))) > 200:
            return _error(400, "Bad Request: MESSAGE_TOO_LONG")
        url = params.get("url")
        if url is not None and not str(url).startswith(f"https://t.me/{BOT_USERNAME}?start="):
            return _error(400, "Bad Request: URL_INVALID")
        return _ok(True)

    async def _do_getUpdates(self, params: dict[str, Any]) -> JSONResponse:
        offset = int(params.get("offset") or 0)
        wait = min(float(params.get("timeout") or 0), self.max_poll_wait_s)
        deadline = time.monotonic() + wait
        while True:
            with self._lock:
                self._updates = [u for u in self._updates if u["update_id"] >= offset]
                ready = list(self._updates)
            if ready or time.monotonic() >= deadline:
                return _ok(ready)
            await asyncio.sleep(0.02)


async def _read_params(request: Request) -> dict[str, Any]:
    if request.method == "GET":
        return {k: decode_param(k, v) for k, v in request.query_params.items()}
    if request.headers.get("content-type", "").startswith("application/json"):
        body = await request.body()
        return dict(json.loads(body)) if body else {}
    form = await request.form()
    return {k: decode_param(k, v) for k, v in form.items() if isinstance(v, str)}


def _check_markup(markup: Any) -> str:
    """What Telegram refuses in a keyboard: callback_data over 64 bytes, empty button text."""
    if not isinstance(markup, dict):
        return ""
    rows = markup.get("inline_keyboard") or markup.get("keyboard") or []
    for row in rows:
        for button in row:
            button = button if isinstance(button, dict) else {"text": button}
            if not str(button.get("text", "")).strip():
                return "button text must be non-empty"
            data = button.get("callback_data")
            if data is not None and not 1 <= len(str(data).encode()) <= 64:
                return "BUTTON_DATA_INVALID"
    return ""


def _ok(result: Any) -> JSONResponse:
    return JSONResponse({"ok": True, "result": result})


def _error(code: int, description: str, parameters: dict[str, Any] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
    if parameters:
        body["parameters"] = parameters
    return JSONResponse(body, status_code=code)


__all__ = [
    "BOT_ID",
    "Call",
    "FakeTelegramApi",
    "bound_socket",
    "decode_param",
    "serve_in_thread",
]
