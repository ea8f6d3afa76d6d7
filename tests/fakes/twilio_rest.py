"""A fake Twilio REST API: a real HTTP server on 127.0.0.1 that the real `twilio` client talks to.

Point the app at it with ``HOTLINE_TWILIO_API_URL`` (``Settings(twilio_api_url=fake.url)``); the
client in bot/channels/twilio/rest.py rewrites ``https://api.twilio.com`` (and any ``*.twilio.com``)
to that base, so paths arrive as Twilio's: ``/2010-04-01/Accounts/{sid}/Messages.json``.

Usage::

    with FakeTwilio() as twilio:                # or fake = FakeTwilio(); ...; fake.stop()
        settings = Settings(twilio_api_url=twilio.url, ...)
        twilio.script(TwilioReply.server_error(), resource="Messages")  # then the default
        ...                                     # send something
        assert len(twilio.messages) == 1        # successful creates only
        assert twilio.requests[0].form["To"] == "+8613800000000"

What it answers:

- ``POST .../Messages.json``  → 201 with a message resource (sid ``SM...``, status ``queued``)
- ``POST .../Calls.json``     → 201 with a call resource (sid ``CA...``, status ``queued``; it
                                keeps the ``twiml`` and ``status_callback`` it was given, so that
                                ``tests.fakes.caller.FakeCaller.pick_up`` can answer the call)
- ``GET  .../Messages/{sid}.json`` and ``.../Calls/{sid}.json`` → the created resource, or 404
- ``GET  .../Messages.json?To=&From=&PageSize=`` → the created messages to and from those
                                numbers, newest first, one page (what ``messages.list`` reads)
- anything else               → 404 with Twilio's error body (code 20404)

Scripting: ``script(*replies, resource=None)`` queues replies that the next matching requests get
instead of the default, first in first out; ``resource`` is ``"Messages"``, ``"Calls"`` or None
(any request). Ready-made replies: ``TwilioReply.server_error()`` (500),
``TwilioReply.rate_limited(retry_after=2)`` (429, code 20429, ``Retry-After`` header),
``TwilioReply.invalid_to()`` (400, code 21211), ``TwilioReply.error(status, code, message)``,
``TwilioReply.hang(seconds)`` (answer only after a delay: for client timeouts). A scripted reply
that is not a success creates nothing.

``delay_s`` delays every answer. ``honour_idempotency = True`` makes the fake answer a repeated
``I-Twilio-Idempotency-Token`` with the resource first created under it, creating nothing new
(what a provider that honours the token would do; Twilio does not document that it does).

Recorded: ``requests`` (every request: method, path, headers, form), ``messages`` and ``calls``
(the resources actually created), ``idempotency_tokens`` (the header of each create). All lists are
safe to read from the test thread; ``reset()`` forgets everything and clears the script.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections import deque
from dataclasses import dataclass, field
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from storage.types import utcnow

IDEMPOTENCY_HEADER = "I-Twilio-Idempotency-Token"
_CREATE = re.compile(
    r"^/2010-04-01/Accounts/(?P<account>[^/]+)/(?P<resource>Messages|Calls)\.json$"
)
_FETCH = re.compile(
    r"^/2010-04-01/Accounts/(?P<account>[^/]+)/(?P<resource>Messages|Calls)/(?P<sid>[^/.]+)\.json$"
)


@dataclass
class RecordedRequest:
    """One request as the fake saw it; ``form`` keeps the last value of each field
    (``form_lists`` all of them)."""

    method: str
    path: str
    headers: dict[str, str]
    form_lists: dict[str, list[str]]
    query: dict[str, list[str]] = field(default_factory=dict)

    @property
    def form(self) -> dict[str, str]:
        return {key: values[-1] for key, values in self.form_lists.items()}

    @property
    def resource(self) -> str | None:
        match = _CREATE.match(self.path) or _FETCH.match(self.path)
        return match["resource"] if match else None

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        for key, value in self.headers.items():
            if key.lower() == lowered:
                return value
        return None


@dataclass(frozen=True)
class TwilioReply:
    """A scripted answer: status, JSON body, extra headers, and a delay before answering."""

    status: int
    body: dict[str, Any] | None = None  # None with a 2xx: the normal created resource
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0

    @property
    def creates(self) -> bool:
        return 200 <= self.status < 300

    @classmethod
    def created(cls) -> TwilioReply:
        return cls(201)

    @classmethod
    def error(cls, status: int, code: int, message: str, **headers: str) -> TwilioReply:
        body = {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        }
        return cls(status, body, dict(headers))

    @classmethod
    def server_error(cls, status: int = 500) -> TwilioReply:
        return cls.error(status, 20500, "Internal Server Error")

    @classmethod
    def rate_limited(cls, retry_after: float | None = 1) -> TwilioReply:
        headers = {} if retry_after is None else {"Retry-After": f"{retry_after:g}"}
        return cls.error(429, 20429, "Too Many Requests", **headers)

    @classmethod
    def invalid_to(cls) -> TwilioReply:
        return cls.error(400, 21211, "The 'To' number is not a valid phone number.")

    @classmethod
    def unsubscribed(cls) -> TwilioReply:
        return cls.error(400, 21610, "Attempt to send to unsubscribed recipient")

    @classmethod
    def hang(cls, seconds: float) -> TwilioReply:
        """Success, but only after ``seconds`` (a client with a shorter timeout gives up first;
        the resource is still created, as at Twilio)."""
        return cls(201, delay_s=seconds)


class FakeTwilio:
    """The server. Start on construction; ``stop()`` (or leave the ``with`` block) to end it."""

    def __init__(self) -> None:
        self.delay_s = 0.0
        self.honour_idempotency = False
        self.requests: list[RecordedRequest] = []
        self.messages: list[dict[str, Any]] = []
        self.calls: list[dict[str, Any]] = []
        self.idempotency_tokens: list[str | None] = []
        self._script: deque[tuple[str | None, TwilioReply]] = deque()
        self._by_token: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name="fake-twilio",
            daemon=True,
        )
        self._thread.start()

    # -- test API -------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def script(self, *replies: TwilioReply, resource: str | None = None) -> None:
        """The next requests (of ``resource``, or any) get these replies, in order."""
        with self._lock:
            self._script.extend((resource, reply) for reply in replies)

    def creates(self, resource: str | None = None) -> list[RecordedRequest]:
        """The POSTs that asked to create a message or call (successful or not)."""
        with self._lock:
            return [
                r
                for r in self.requests
                if r.method == "POST" and r.resource and (resource in (None, r.resource))
            ]

    def reset(self) -> None:
        with self._lock:
            self.delay_s = 0.0
            self.honour_idempotency = False
            self.requests.clear()
            self.messages.clear()
            self.calls.clear()
            self.idempotency_tokens.clear()
            self._script.clear()
            self._by_token.clear()

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeTwilio:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- answering ------------------------------------------------------------------------
    def _next_reply(self, resource: str | None) -> TwilioReply | None:
        with self._lock:
            for n, (wanted, reply) in enumerate(self._script):
                if wanted is None or wanted == resource:
                    del self._script[n]
                    return reply
        return None

    def _resource(self, kind: str, account: str, form: dict[str, str]) -> dict[str, Any]:
        now = format_datetime(utcnow(), usegmt=True)
        prefix = "SM" if kind == "Messages" else "CA"
        sid = prefix + uuid.uuid4().hex
        base = {
            "sid": sid,
            "account_sid": account,
            "to": form.get("To"),
            "from": form.get("From"),
            "status": "queued",
            "date_created": now,
            "date_updated": now,
            "api_version": "2010-04-01",
            "uri": f"/2010-04-01/Accounts/{account}/{kind}/{sid}.json",
        }
        if kind == "Messages":
            base.update(body=form.get("Body", ""), direction="outbound-api", num_segments="1")
        else:
            base.update(
                direction="outbound-api",
                twiml=form.get("Twiml"),
                url=form.get("Url"),
                status_callback=form.get("StatusCallback"),
                status_callback_method=form.get("StatusCallbackMethod"),
            )
        return base

    def _answer(self, request: RecordedRequest) -> tuple[int, dict[str, Any], dict[str, str]]:
        if self.delay_s:
            self._stopping.wait(self.delay_s)
        listing = _CREATE.match(request.path) if request.method == "GET" else None
        if listing is not None and listing["resource"] != "Messages":
            listing = None
        create = _CREATE.match(request.path) if request.method == "POST" else None
        fetch = _FETCH.match(request.path) if request.method == "GET" else None
        if create is None and fetch is None and listing is None:
            return 404, _not_found(request.path), {}
        resource = (create or fetch or listing)["resource"]  # type: ignore[index]
        reply = self._next_reply(resource)
        if reply is not None and reply.delay_s:
            self._stopping.wait(reply.delay_s)
        if reply is not None and not reply.creates:
            return reply.status, reply.body or {}, reply.headers
        if listing is not None:
            return 200, self._list(request), {}
        if fetch is not None:
            with self._lock:
                pool = self.messages if resource == "Messages" else self.calls
                found = [r for r in pool if r["sid"] == fetch["sid"]]
            return (200, found[0], {}) if found else (404, _not_found(request.path), {})
        token = request.header(IDEMPOTENCY_HEADER)
        with self._lock:
            self.idempotency_tokens.append(token)
            if self.honour_idempotency and token and token in self._by_token:
                return 201, self._by_token[token], {}
            created = self._resource(resource, create["account"], request.form)  # type: ignore[index]
            (self.messages if resource == "Messages" else self.calls).append(created)
            if token:
                self._by_token[token] = created
        extra = reply.headers if reply is not None else {}
        return (reply.status if reply is not None else 201), created, extra

    def _list(self, request: RecordedRequest) -> dict[str, Any]:
        """One page of the messages created, newest first, filtered by To and From."""
        wanted = {key: values[-1] for key, values in request.query.items()}
        size = int(wanted.get("PageSize") or 50)
        with self._lock:
            found = [
                m
                for m in reversed(self.messages)
                if wanted.get("To") in (None, m["to"]) and wanted.get("From") in (None, m["from"])
            ][:size]
        return {
            "messages": found,
            "page": 0,
            "page_size": size,
            "start": 0,
            "end": max(0, len(found) - 1),
            "uri": request.path,
            "first_page_uri": request.path,
            "next_page_uri": None,
            "previous_page_uri": None,
        }

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def _handle(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                parts = urlsplit(self.path)
                request = RecordedRequest(
                    method=method,
                    path=parts.path,
                    headers=dict(self.headers.items()),
                    form_lists=parse_qs(body, keep_blank_values=True),
                    query=parse_qs(parts.query, keep_blank_values=True),
                )
                with fake._lock:
                    fake.requests.append(request)
                status, payload, headers = fake._answer(request)
                self._send(status, json.dumps(payload).encode(), headers)

            def do_POST(self) -> None:
                self._handle("POST")

            def do_GET(self) -> None:
                self._handle("GET")

            def _send(self, status: int, payload: bytes, headers: dict[str, str]) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:  # the client gave up (timeout test)
                    self.close_connection = True

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


def _not_found(path: str) -> dict[str, Any]:
    return {
        "code": 20404,
        "message": f"The requested resource {path} was not found",
        "more_info": "https://www.twilio.com/docs/errors/20404",
        "status": 404,
    }
