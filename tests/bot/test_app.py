"""The app's health checks: /healthz always, /readyz only while the database answers."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from bot.app import create_app
from config.settings import Settings
from tests.pg_server import PostgresServer


def client_for(url: str, data_dir: Path) -> TestClient:
    return TestClient(create_app(Settings(database_url=url, data_dir=data_dir, _env_file=None)))


def test_healthz_and_readyz(db_url: str, tmp_path: Path) -> None:
    with client_for(db_url, tmp_path) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json() == {"status": "ok", "database": "ok"}
        assert ready.headers["x-request-id"]


@pytest.mark.postgres
def test_readyz_is_503_while_the_database_is_down(
    pg_server: PostgresServer, tmp_path: Path
) -> None:
    url = pg_server.create_database("readyz_probe")
    with client_for(url, tmp_path) as client:
        assert client.get("/readyz").status_code == 200
        pg_server.drop_database("readyz_probe")  # the database goes away under the app
        down = client.get("/readyz")
        assert down.status_code == 503
        assert down.json() == {"status": "unavailable", "database": "unreachable"}
        assert client.get("/healthz").status_code == 200
        pg_server.create_database("readyz_probe")  # and comes back
        assert client.get("/readyz").status_code == 200
    pg_server.drop_database("readyz_probe")


def test_readyz_is_503_for_an_unreachable_server(tmp_path: Path) -> None:
    with client_for("postgresql+psycopg://nobody@127.0.0.1:9/none", tmp_path) as client:
        assert client.get("/readyz").status_code == 503
