"""`hotline serve` as an operator runs it: migrates, listens, answers health checks, logs JSON."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from storage.db import make_engine
from storage.migrate import current_revision
from tests.storage.test_migrations import HEAD


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_migrates_and_answers(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    port = free_port()
    hotline = Path(sys.executable).with_name("hotline")
    env = {
        **os.environ,
        "HOTLINE_DATABASE_URL": url,
        "HOTLINE_PORT": str(port),
        "HOTLINE_DATA_DIR": str(tmp_path),
    }
    log = (tmp_path / "serve.log").open("w+")
    proc = subprocess.Popen([str(hotline), "serve"], env=env, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None, Path(log.name).read_text()
                assert time.monotonic() < deadline, "server did not start in 30 s"
                time.sleep(0.2)
        assert ready.status_code == 200
        assert ready.json() == {"status": "ok", "database": "ok"}
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").json() == {"status": "ok"}
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    engine = make_engine(url)
    assert current_revision(engine) == HEAD
    engine.dispose()
    lines = [json.loads(x) for x in Path(log.name).read_text().splitlines() if x.startswith("{")]
    requests = [x for x in lines if x.get("event") == "request"]
    assert {r["path"] for r in requests} >= {"/readyz", "/healthz"}
    assert all(r["request_id"] and r["status"] == 200 for r in requests)
