"""The app's health checks: /healthz always, /readyz only while the database answers."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import structlog
from fastapi.testclient import TestClient
from sqlalchemy import make_url, text
from structlog.testing import capture_logs

from bot.runtime.app import create_app
from config.settings import Settings
from storage.db import make_engine, transaction
from storage.models import ApiToken, Role
from storage.site import site_of
from storage.tokens import hash_token
from tests.factories import make_staff
from tests.pg_server import PostgresServer


def client_for(url: str, data_dir: Path) -> TestClient:
    return TestClient(create_app(Settings(database_url=url, data_dir=data_dir, _env_file=None)))


def test_healthz_and_readyz(db_url: str, tmp_path: Path) -> None:
    with client_for(db_url, tmp_path) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json() == {
            "status": "ok",
            "database": "ok",
            "spool": {"waiting": 0, "failed": 0},
        }
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
        assert down.json()["database"] == "unreachable"
        assert client.get("/healthz").status_code == 200
        pg_server.create_database("readyz_probe")  # and comes back
        assert client.get("/readyz").status_code == 200
    pg_server.drop_database("readyz_probe")


@pytest.mark.postgres
def test_readyz_after_the_server_closed_the_pooled_connections(
    pg_server: PostgresServer, tmp_path: Path
) -> None:
    """A restart of PostgreSQL leaves the pool's connections dead: readiness is still told
    right at once (no 503 for a database that is up), and nothing fails."""
    url = pg_server.create_database("readyz_restart")
    with client_for(url, tmp_path) as client:
        assert client.get("/readyz").status_code == 200
        with client.app.state.engine.connect() as conn:  # type: ignore[attr-defined]
            pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        admin = make_engine(pg_server.url("postgres"))
        with admin.begin() as conn:
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = 'readyz_restart'"
                )
            )
        admin.dispose()
        ready = client.get("/readyz")
        assert (ready.status_code, ready.json()["database"]) == (200, "ok")
        with client.app.state.engine.connect() as conn:  # type: ignore[attr-defined]
            assert conn.execute(text("SELECT pg_backend_pid()")).scalar_one() != pid
    pg_server.drop_database("readyz_restart")


def test_readyz_is_503_for_an_unreachable_server(tmp_path: Path) -> None:
    with client_for("postgresql+psycopg://nobody@127.0.0.1:9/none", tmp_path) as client:
        assert client.get("/readyz").status_code == 503


def test_each_request_is_logged_once_under_its_id(tmp_path: Path) -> None:
    client = client_for("postgresql+psycopg://nobody@127.0.0.1:9/none", tmp_path)
    with client, capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        given = client.get("/healthz", headers={"x-request-id": "from-the-proxy"})
        made = client.get("/readyz")
    assert given.headers["x-request-id"] == "from-the-proxy"
    made_id = made.headers["x-request-id"]
    assert len(made_id) == 16 and made_id != "from-the-proxy"
    requests = [e for e in logs if e["event"] == "request"]
    assert [(e["request_id"], e["method"], e["path"], e["status"]) for e in requests] == [
        ("from-the-proxy", "GET", "/healthz", 200),
        (made_id, "GET", "/readyz", 503),
    ]
    assert all(isinstance(e["ms"], float) for e in requests)
    # What is logged while a request runs carries its id.
    [unreachable] = [e for e in logs if e["event"] == "database_unreachable"]
    assert unreachable["request_id"] == made_id


def test_a_request_that_fails_is_logged_as_a_500(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hotline.db'}"
    app = create_app(Settings(database_url=url, data_dir=tmp_path, _env_file=None))

    @app.get("/fails")
    async def fails() -> None:
        raise RuntimeError("a bug")

    with TestClient(app, raise_server_exceptions=False) as client, capture_logs() as logs:
        assert client.get("/fails").status_code == 500
    [request] = [e for e in logs if e["event"] == "request"]
    assert (request["path"], request["status"]) == ("/fails", 500)


@pytest.mark.postgres
def test_a_database_that_is_down_gets_a_503_that_says_so(
    postgres_url: str, pg_server: PostgresServer, trained_nlu_dir: Path, tmp_path: Path
) -> None:
    """Not a bare 500: a program is told in JSON (with Retry-After), a person at the console
    gets a page in their language; both work again once the database is back."""
    shutil.copytree(trained_nlu_dir / "nlu-cache", tmp_path / "nlu-cache")
    settings = Settings(database_url=postgres_url, data_dir=tmp_path, _env_file=None)
    engine = make_engine(postgres_url)
    with transaction(engine) as session:
        holder = make_staff(session, Role.STAFF, username="bridge")
        session.add(ApiToken(staff_id=holder.id, name="bridge", token_hash=hash_token("hlt_t0")))
    engine.dispose()
    database = str(make_url(postgres_url).database)
    message = {"sender": "bridge-1", "text": "你好", "message_id": "m1"}
    bearer = {"Authorization": "Bearer hlt_t0"}
    with TestClient(create_app(settings)) as client:
        page = client.get("/login")
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert csrf is not None
        login = {"username": "nobody", "password": "x", "csrf_token": csrf.group(1)}
        pg_server.refuse_connections(database)
        try:
            api = client.post("/api/v1/messages", json=message, headers=bearer)
            assert api.status_code == 503 and api.headers["retry-after"] == "5"
            assert api.json()["error"] == "database_unavailable"
            signing_in = client.post("/login", data=login, headers={"Accept": "text/html"})
            assert signing_in.status_code == 503
            assert "数据库暂时连不上，这一步没有完成" in signing_in.text
        finally:
            pg_server.allow_connections(database)
        assert client.post("/api/v1/messages", json=message, headers=bearer).status_code == 200
        again = client.post("/login", data=login, headers={"Accept": "text/html"})
        assert again.status_code == 401 and "数据库" not in again.text  # a wrong password


def test_the_app_binds_its_database_to_its_deployment(db_url: str, tmp_path: Path) -> None:
    """The case actions of every request work with the app's own deployment (its time zone,
    texts and categories), whatever the environment says (storage/site.py)."""
    settings = Settings(
        database_url=db_url, data_dir=tmp_path, timezone="Asia/Urumqi", _env_file=None
    )
    app = create_app(settings)
    with TestClient(app):
        assert site_of(app.state.engine) is app.state.deployment
        assert site_of(app.state.engine).tz.key == "Asia/Urumqi"
