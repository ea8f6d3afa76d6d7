"""A fake WeChat Official Account API: a real HTTP server on 127.0.0.1 that wechatpy's client
talks to (``Settings(wechat_api_url=fake.url)``; paths arrive as WeChat's, under ``/cgi-bin/``).

What it answers, as WeChat does (JSON with ``errcode``/``errmsg``):

- ``GET  /cgi-bin/token?grant_type=client_credential&appid=&secret=`` → a new access token
  (``TOKEN-1``, ``TOKEN-2``, ...; 7,200 s); a wrong AppID or secret → errcode 40125.
- ``POST /cgi-bin/message/custom/send`` → ``{"errcode": 0}``, recorded in ``custom``.
- ``POST /cgi-bin/message/template/send`` → ``{"errcode": 0, "msgid": n}``, in ``templates``.
- ``POST /cgi-bin/menu/create`` → ``{"errcode": 0}``, the menu in ``menus``.
- ``GET  /cgi-bin/media/get?media_id=`` → the bytes given to ``add_media`` (audio/amr), or 40007.

Every call but ``token`` needs a token the fake issued and has not ended: ``end_tokens()`` ends
them all (errcode 40001, which makes wechatpy fetch a new one and try again). ``fail(path,
errcode, errmsg, times=1)`` makes the next calls to a path fail with that error (45015: out of
the customer-service window; 45047: too many messages; 43004: the person does not follow us;
45009: the API limit). ``delay_s`` delays every answer. Recorded: ``requests`` (path, query,
JSON body) and the lists above.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    body: dict[str, Any]


class FakeWeChatApi:
    def __init__(self, app_id: str, secret: str) -> None:
        self.app_id = app_id
        self.secret = secret
        self.delay_s = 0.0
        self.requests: list[Seen] = []
        self.custom: list[dict[str, Any]] = []
        self.templates: list[dict[str, Any]] = []
        self.menus: list[dict[str, Any]] = []
        self.media: dict[str, bytes] = {}
        self.tokens_issued = 0
        self._valid: set[str] = set()
        self._failures: dict[str, deque[tuple[int, str]]] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    # -- control --------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/cgi-bin/"

    def start(self) -> FakeWeChatApi:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeWeChatApi:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def fail(self, path: str, errcode: int, errmsg: str = "", times: int = 1) -> None:
        with self._lock:
            queue = self._failures.setdefault(path, deque())
            queue.extend([(errcode, errmsg or f"error {errcode}")] * times)

    def end_tokens(self) -> None:
        with self._lock:
            self._valid.clear()

    def add_media(self, media_id: str, data: bytes) -> None:
        self.media[media_id] = data

    def wait_for(self, attribute: str, count: int = 1, timeout: float = 10.0) -> list[Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = list(getattr(self, attribute))
            if len(found) >= count:
                return found
            time.sleep(0.02)
        raise AssertionError(f"{attribute}: {len(getattr(self, attribute))} < {count}")

    # -- the server -----------------------------------------------------------------------------

    def _answer(self, method: str, path: str, query: dict[str, str], body: dict[str, Any]) -> Any:
        with self._lock:
            self.requests.append(Seen(method, path, query, body))
            if path == "/cgi-bin/token":
                if query.get("appid") != self.app_id or query.get("secret") != self.secret:
                    return {"errcode": 40125, "errmsg": "invalid appsecret"}
                self.tokens_issued += 1
                token = f"TOKEN-{self.tokens_issued}"
                self._valid.add(token)
                return {"access_token": token, "expires_in": 7200}
            if query.get("access_token") not in self._valid:
                return {"errcode": 40001, "errmsg": "invalid credential, access_token is invalid"}
            failures = self._failures.get(path)
            if failures:
                errcode, errmsg = failures.popleft()
                return {"errcode": errcode, "errmsg": errmsg}
            if path == "/cgi-bin/message/custom/send":
                self.custom.append(body)
                return {"errcode": 0, "errmsg": "ok"}
            if path == "/cgi-bin/message/template/send":
                self.templates.append(body)
                return {"errcode": 0, "errmsg": "ok", "msgid": 1000 + len(self.templates)}
            if path == "/cgi-bin/menu/create":
                self.menus.append(body)
                return {"errcode": 0, "errmsg": "ok"}
            if path == "/cgi-bin/media/get":
                data = self.media.get(query.get("media_id", ""))
                if data is None:
                    return {"errcode": 40007, "errmsg": "invalid media_id"}
                return data
            return {"errcode": 40066, "errmsg": f"invalid url {path}"}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                pass

            def _serve(self, method: str) -> None:
                parts = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw.decode("utf-8")) if raw else {}
                except ValueError:
                    body = {"_raw": raw.decode("utf-8", "replace")}
                if fake.delay_s:
                    time.sleep(fake.delay_s)
                answer = fake._answer(method, parts.path, query, body)
                if isinstance(answer, bytes):
                    data, kind = answer, "audio/amr"
                else:
                    data, kind = json.dumps(answer, ensure_ascii=False).encode(), "application/json"
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

        return Handler
