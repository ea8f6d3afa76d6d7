"""The whole app on a real uvicorn server on 127.0.0.1 (a free port), as the providers reach it."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn


def free_socket() -> tuple[socket.socket, str]:
    """A bound socket on 127.0.0.1 and its URL (known before the app is built, for settings that
    name it)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock, f"http://127.0.0.1:{sock.getsockname()[1]}"


def with_trained_model(trained_nlu_dir: Path, data_dir: Path) -> None:
    """The suite's trained NLU model in ``data_dir``, so the app does not train its own."""
    if not (data_dir / "nlu-cache").exists():
        shutil.copytree(trained_nlu_dir / "nlu-cache", data_dir / "nlu-cache")


@contextmanager
def served(app: Any, sock: socket.socket) -> Iterator[None]:
    """``app`` served on ``sock`` until the block ends (its lifespan runs: start-up, shut-down)."""
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.01)
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
