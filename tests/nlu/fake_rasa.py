"""A small real HTTP server on 127.0.0.1 that answers POST /model/parse like Rasa, or fails on purpose.

Behaviour is set per test: canned replies per text or a function, a delay, an error status, or a
raw (malformed) body. Every request it receives is recorded.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Reply = dict[str, Any]


@dataclass
class RecordedRequest:
    """One request as the server saw it."""

    method: str
    path: str
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


def rasa_reply(text: str, intent: str = "greet", confidence: float = 0.9) -> Reply:
    """A plausible Rasa parse for ``text``: one intent, no entities, one token per character."""
    return {
        "text": text,
        "intent": {"name": intent, "confidence": confidence},
        "entities": [],
        "text_tokens": [[i, i + 1] for i in range(len(text))],
        "intent_ranking": [
            {"name": intent, "confidence": confidence},
            {"name": "out_of_scope", "confidence": round(1 - confidence, 6)},
        ],
    }


class FakeRasa:
    """The server; set the public attributes to change what the next requests get."""

    def __init__(self) -> None:
        self.replies: dict[str, Reply] = {}
        self.handler: Callable[[str], Reply] | None = None
        self.delay_s = 0.0
        self.status = 200
        self.raw_body: bytes | None = None
        self.requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name="fake-rasa",
            daemon=True,
        )
        self._thread.start()

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def parse_texts(self) -> list[str]:
        """The texts of the POST /model/parse requests received so far."""
        with self._lock:
            return [r.json["text"] for r in self.requests if r.path == "/model/parse"]

    def reset(self) -> None:
        """Back to answering every text with a good reply; forget the requests."""
        self.replies = {}
        self.handler = None
        self.delay_s = 0.0
        self.status = 200
        self.raw_body = None
        with self._lock:
            self.requests.clear()

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _answer(self, body: bytes) -> tuple[int, bytes]:
        if self.delay_s:
            self._stopping.wait(self.delay_s)
        if self.status != 200:
            return self.status, b'{"version":"3.6.21","status":"failure","code":500}'
        if self.raw_body is not None:
            return 200, self.raw_body
        try:
            text = json.loads(body)["text"]
        except (ValueError, KeyError, TypeError):
            return 500, b'{"status":"failure","message":"no text"}'
        if text in self.replies:
            reply = self.replies[text]
        elif self.handler is not None:
            reply = self.handler(text)
        else:
            reply = rasa_reply(text)
        return 200, json.dumps(reply, ensure_ascii=False).encode()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as Rasa's Sanic server does
            disable_nagle_algorithm = True  # headers and body go out in separate writes

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with fake._lock:
                    fake.requests.append(RecordedRequest("POST", self.path, body))
                if self.path != "/model/parse":
                    self._send(404, b'{"status":"failure","code":404}')
                    return
                status, payload = fake._answer(body)
                self._send(status, payload)

            def _send(self, status: int, payload: bytes) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:  # the client gave up (timeout test)
                    self.close_connection = True

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler
