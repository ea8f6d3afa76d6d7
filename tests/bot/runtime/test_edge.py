"""The app refuses a NUL character in what a request brings before any route reads it
(PostgreSQL cannot store one: it was a 500 deep inside), and hands every other body on
unchanged. Run on SQLite and on PostgreSQL."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from bot.runtime.app import create_app
from config.settings import Settings
from storage.db import transaction
from storage.models import AuditEntry, Role
from tests.console.conftest import PASSWORD_HASH
from tests.factories import make_staff, make_unit_tree

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def http(db_url: str, engine: Engine, trained_nlu_dir: Path) -> TestClient:
    with transaction(engine) as session:
        tree = make_unit_tree(session)
        make_staff(
            session, Role.STAFF, [tree.station_a], username="staff_a", password_hash=PASSWORD_HASH
        )
    settings = Settings(
        database_url=db_url,
        data_dir=trained_nlu_dir,
        secret_key="test-secret-key-test-secret-key",
        run_worker=False,
        _env_file=None,
    )
    with TestClient(create_app(settings, engine)) as client:
        yield client


def audit_entries(engine: Engine) -> int:
    with Session(engine) as session:
        return session.scalar(select(func.count()).select_from(AuditEntry)) or 0


def test_a_nul_anywhere_in_a_request_is_refused_saying_where(
    http: TestClient, engine: Engine
) -> None:
    token = CSRF.search(http.get("/login").text).group(1)  # type: ignore[union-attr]
    before = audit_entries(engine)
    signing_in = http.post(
        "/login",
        data={"username": "staff_a\x00", "password": "x", "csrf_token": token},
        follow_redirects=False,
    )
    assert signing_in.status_code == 400
    assert signing_in.json()["detail"].endswith("in the request body")
    assert audit_entries(engine) == before  # nothing was read, nothing written
    searching = http.get("/queue", params={"q": "王\x00"}, follow_redirects=False)
    assert searching.status_code == 400 and "in the query string" in searching.text
    parsing = http.post("/nlu/parse", json={"text": "你好\x00"})
    assert parsing.status_code == 400 and "U+0000" in parsing.text
    api = http.post(
        "/api/v1/messages", json={"sender": "x", "text": "\x00"}, headers={"Authorization": "x"}
    )
    assert api.status_code == 400


def test_other_bodies_pass_unchanged(http: TestClient) -> None:
    token = CSRF.search(http.get("/login").text).group(1)  # type: ignore[union-attr]
    signed_in = http.post(
        "/login",
        data={"username": "staff_a", "password": "correct horse battery", "csrf_token": token},
        follow_redirects=False,
    )
    assert signed_in.status_code == 303  # the form the guard read reached the route whole
    parsed = http.post("/nlu/parse", json={"text": "我摔倒了"})
    assert parsed.status_code == 401  # the body reached the route, which wants a token
    # The providers' webhooks are not refused here (the channels clean them): Telegram is off.
    assert http.post("/telegram/webhook", json={"x": "\x00"}).status_code == 404
