"""`hotline serve` as an operator runs it: migrates, listens, answers health checks, logs JSON;
with --workers, several processes on one port, the background work in exactly one of them."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import httpx
from alembic.script import ScriptDirectory

from storage.db import make_engine
from storage.migrate import alembic_config, current_revision


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(tmp_path: Path, *args: str, **env: str) -> Iterator[tuple[str, IO[str]]]:
    """`hotline serve` on an SQLite file in ``tmp_path``: (its URL, its log) once /readyz
    answers; stopped with SIGTERM, as a service manager stops it."""
    port = free_port()
    hotline = Path(sys.executable).with_name("hotline")
    environment = {
        **os.environ,
        "HOTLINE_DATABASE_URL": f"sqlite:///{tmp_path / 'fresh.db'}",
        "HOTLINE_PORT": str(port),
        "HOTLINE_DATA_DIR": str(tmp_path),
        **env,
    }
    log = (tmp_path / "serve.log").open("w+")
    proc = subprocess.Popen([str(hotline), "serve", *args], env=environment, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, Path(log.name).read_text()
            assert time.monotonic() < deadline, "server not ready in 60 s"
            time.sleep(0.2)
        yield url, log
    finally:
        proc.terminate()
        # uvicorn re-raises the SIGTERM it handled once shut down (a clean stop to systemd).
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM), Path(log.name).read_text()[-3000:]
        assert "Finished server process" in Path(log.name).read_text()


def events(log: IO[str]) -> list[dict[str, Any]]:
    lines = Path(log.name).read_text().splitlines()
    return [json.loads(x) for x in lines if x.startswith("{")]


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def test_serve_migrates_and_answers(tmp_path: Path) -> None:
    with serving(tmp_path) as (url, log):
        ready = httpx.get(f"{url}/readyz")
        assert ready.json()["database"] == "ok"
        assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}
    engine = make_engine(f"sqlite:///{tmp_path / 'fresh.db'}")
    assert current_revision(engine) == head_revision()
    engine.dispose()
    requests = [x for x in events(log) if x.get("event") == "request"]
    assert {r["path"] for r in requests} >= {"/readyz", "/healthz"}
    assert all(r["request_id"] and r["status"] == 200 for r in requests)
    [here] = [x for x in events(log) if x.get("event") == "background_work_here"]
    assert here["workers"] == 1


def background_pids(log: IO[str]) -> list[int]:
    return [x["pid"] for x in events(log) if x.get("event") == "background_work_here"]


def test_workers_share_the_port_and_one_of_them_sends(tmp_path: Path) -> None:
    with serving(tmp_path, "--workers", "2", HOTLINE_LOG_LEVEL="INFO") as (url, log):
        with httpx.Client() as client:
            for _ in range(20):  # new connections, taken by either process
                response = client.get(f"{url}/healthz", headers={"connection": "close"})
                assert response.status_code == 200
        started = [x for x in events(log) if x.get("event", "").startswith("Started server")]
        assert len(started) == 2
        deadline = time.monotonic() + 30
        while not background_pids(log):
            assert time.monotonic() < deadline, "no process took the background work"
            time.sleep(0.2)
        time.sleep(1.0)
        [first] = background_pids(log)  # one process, not both
        # It dies (the kernel frees its lock); uvicorn starts another; the work carries on.
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while len(background_pids(log)) < 2:
            assert time.monotonic() < deadline, "no process took over the background work"
            time.sleep(0.2)
        assert background_pids(log)[1] != first
        assert httpx.get(f"{url}/readyz").status_code == 200
    engine = make_engine(f"sqlite:///{tmp_path / 'fresh.db'}")
    assert current_revision(engine) == head_revision()  # migrated once, by the parent
    engine.dispose()
    assert (tmp_path / "secret_key").is_file()
