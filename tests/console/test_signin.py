"""Signing in and out: passwords, the lock after failures, CSRF, sessions that end."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from bot.cli import app as cli_app
from bot.runtime.app import create_app
from config.settings import Settings
from console.auth import SESSION_COOKIE
from storage.models import AuditEntry, ConsoleSession, Staff
from storage.passwords import hash_password
from storage.types import utcnow
from tests.console.conftest import PASSWORD, World, make_console_app


def _staff(engine: Engine, username: str) -> Staff:
    with Session(engine) as session:
        return session.scalars(select(Staff).where(Staff.username == username)).one()


def _audit_actions(engine: Engine, staff_id: int) -> list[str]:
    with Session(engine) as session:
        return list(
            session.scalars(
                select(AuditEntry.action)
                .where(AuditEntry.subject_type == "staff", AuditEntry.subject_id == staff_id)
                .order_by(AuditEntry.id)
            )
        )


def test_home_sends_a_stranger_to_sign_in_and_a_signed_in_person_to_the_queue(
    world: World, browser
) -> None:
    stranger = browser(None)
    response = stranger.client.get("/", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/login"
    assert stranger.client.get("/queue", follow_redirects=False).headers["location"] == (
        "/login?next=/queue"
    )
    volunteer = browser("vol_a1")
    response = volunteer.client.get("/", follow_redirects=False)
    assert response.headers["location"] == "/queue"
    page = volunteer.get("/queue")
    assert page.status_code == 200 and "王芳" in page.text


def test_sign_in_goes_to_the_page_asked_for_but_never_off_site(world: World, browser) -> None:
    b = browser(None)
    b.get("/login")
    response = b.post(
        "/login", {"username": "staff_a", "password": PASSWORD, "next": "/queue?view=mine"}
    )
    assert response.headers["location"] == "/queue?view=mine"
    b2 = browser(None)
    b2.get("/login")
    response = b2.post(
        "/login", {"username": "staff_a", "password": PASSWORD, "next": "//evil.example/x"}
    )
    assert response.headers["location"] == "/queue"


def test_a_wrong_password_and_an_unknown_name_get_the_same_answer(
    world: World, browser, engine: Engine
) -> None:
    b = browser(None)
    wrong = b.sign_in("staff_a", "not the password")
    unknown = b.sign_in("nobody", "not the password")
    assert wrong.status_code == unknown.status_code == 401
    assert "用户名或密码不对" in wrong.text and "用户名或密码不对" in unknown.text
    assert b.client.get("/queue", follow_redirects=False).status_code == 303  # still signed out
    assert _staff(engine, "staff_a").failed_logins == 1
    assert "sign_in_failed" in _audit_actions(engine, world.staff_a.id)


def test_repeated_failures_lock_the_account_even_against_the_right_password(
    world: World, browser, engine: Engine
) -> None:
    b = browser(None)
    for _ in range(4):
        assert b.sign_in("vol_a1", "guess").status_code == 401
    locked = b.sign_in("vol_a1", "guess")
    assert locked.status_code == 401 and "用户名或密码不对" in locked.text
    assert b.sign_in("vol_a1", PASSWORD).status_code == 401  # the right one, but locked
    staff = _staff(engine, "vol_a1")
    assert staff.locked_until is not None and staff.locked_until > utcnow()
    assert "account_locked" in _audit_actions(engine, staff.id)
    # Once the lock has passed, the right password works again.
    with Session(engine) as session, session.begin():
        session.get(Staff, staff.id).locked_until = utcnow() - timedelta(seconds=1)
    assert b.sign_in("vol_a1", PASSWORD).status_code == 303
    assert _staff(engine, "vol_a1").failed_logins == 0


def test_a_locked_account_answers_as_an_unknown_name_does(
    world: World, browser, engine: Engine
) -> None:
    """No account enumeration: whether the name exists and is locked, or does not exist, the
    status and the page are the same (the page says accounts lock after repeated failures)."""
    b = browser(None)
    for _ in range(5):
        b.sign_in("vol_a1", "guess")
    assert _staff(engine, "vol_a1").locked_until is not None
    locked = b.sign_in("vol_a1", "guess")
    unknown = b.sign_in("nobody_here", "guess")
    assert locked.status_code == unknown.status_code == 401
    assert "账号会锁定" in locked.text

    def error_of(page: str) -> str:
        start = page.index("用户名或密码不对")
        return page[start : page.index("<", start)]

    assert error_of(locked.text) == error_of(unknown.text)


def test_an_inactive_account_cannot_sign_in(world: World, browser, engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        session.get(Staff, world.staff_b.id).active = False
    assert browser(None).sign_in("staff_b").status_code == 403


def test_a_form_without_the_csrf_token_is_refused(world: World, browser, engine: Engine) -> None:
    b = browser(None)
    b.get("/login")
    response = b.post("/login", {"username": "staff_a", "password": PASSWORD}, csrf=False)
    assert response.status_code == 403
    assert _staff(engine, "staff_a").failed_logins == 0
    forged = b.client.post(
        "/login",
        data={"username": "staff_a", "password": PASSWORD, "csrf_token": "forged"},
        follow_redirects=False,
    )
    assert forged.status_code == 403


def test_sign_out_ends_the_session(world: World, browser, engine: Engine) -> None:
    b = browser("staff_a")
    assert b.post("/logout").headers["location"] == "/login"
    assert b.client.get("/queue", follow_redirects=False).status_code == 303
    assert "sign_out" in _audit_actions(engine, world.staff_a.id)


def test_a_saved_cookie_stops_working_after_sign_out_on_every_server(
    world: World, browser, engine: Engine, tmp_path: Path
) -> None:
    b = browser("staff_a")
    saved = b.client.cookies.get(SESSION_COOKIE)
    assert saved
    with TestClient(make_console_app(engine, tmp_path / "second")) as other:
        other.cookies.set(SESSION_COOKIE, saved)
        assert other.get("/queue", follow_redirects=False).status_code == 200
        b.post("/logout")
        other.cookies.set(SESSION_COOKIE, saved)  # the copy someone kept
        assert other.get("/queue", follow_redirects=False).status_code == 303
    replay = browser(None)
    replay.client.cookies.set(SESSION_COOKIE, saved)
    assert replay.client.get("/queue", follow_redirects=False).status_code == 303
    with Session(engine) as session:
        ended = session.scalars(
            select(ConsoleSession).where(ConsoleSession.staff_id == world.staff_a.id)
        ).all()
        assert [(s.ended_why, s.ended_at is not None) for s in ended] == [("signed_out", True)]


@pytest.mark.parametrize(
    ("command", "why"),
    [
        (
            ["users", "reset-password", "--username", "staff_a", "--password-stdin"],
            "password_reset",
        ),
        (["users", "disable", "--username", "staff_a"], "off"),
    ],
)
def test_a_password_reset_or_switching_the_account_off_ends_its_sessions(
    world: World, browser, engine: Engine, db_url: str, command: list[str], why: str
) -> None:
    first, second = browser("staff_a"), browser("staff_a")  # two browsers, say
    other = browser("staff_b")
    result = CliRunner().invoke(
        cli_app, command, env={"HOTLINE_DATABASE_URL": db_url}, input="a-new-long-secret\n"
    )
    assert result.exit_code == 0, result.output
    assert re.search(r"\b2 (console )?session\(s\)", result.output), result.output
    for b in (first, second):
        assert b.client.get("/queue", follow_redirects=False).status_code == 303
    assert other.client.get("/queue", follow_redirects=False).status_code == 200
    with Session(engine) as session:
        whys = session.scalars(
            select(ConsoleSession.ended_why).where(ConsoleSession.staff_id == world.staff_a.id)
        ).all()
        assert sorted(whys) == [why, why]
        assert session.get(Staff, world.staff_a.id).active is (why != "off")


def test_a_password_reset_signs_out_old_sessions(world: World, browser, engine: Engine) -> None:
    b = browser("staff_a")
    assert b.client.get("/queue", follow_redirects=False).status_code == 200
    with Session(engine) as session, session.begin():
        session.get(Staff, world.staff_a.id).password_hash = hash_password("another password 1")
    assert b.client.get("/queue", follow_redirects=False).status_code == 303


def test_the_language_switch_keeps_to_the_session(world: World, browser) -> None:
    b = browser("staff_a")
    assert "待办队列" in b.get("/queue").text
    b.client.get("/language/en?next=/queue")
    page = b.get("/queue")
    assert "Queue" in page.text and "待办队列" not in page.text
    assert 'lang="en"' in page.text


def test_the_served_app_has_the_console_and_its_static_files(
    engine: Engine, tmp_path: Path
) -> None:
    settings = Settings(
        database_url=engine.url.render_as_string(hide_password=False),
        data_dir=tmp_path,
        _env_file=None,
    )
    with TestClient(create_app(settings, engine)) as client:
        assert client.get("/", follow_redirects=False).headers["location"] == "/login"
        assert "登录" in client.get("/login").text
        script = client.get("/static/htmx.min.js")
        assert script.status_code == 200 and script.text.startswith("var htmx=")
    # No HOTLINE_SECRET_KEY: one was made and kept, readable by its owner only.
    key_file = tmp_path / "secret_key"
    assert len(key_file.read_text()) >= 40 and key_file.stat().st_mode & 0o077 == 0
