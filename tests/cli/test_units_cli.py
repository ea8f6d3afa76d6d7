"""`hotline units list` and `hotline units telegram-chat` against a real database (SQLite and
PostgreSQL): an operator links a unit's Telegram group chat, or clears it, with an audit entry."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from click.testing import Result
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from bot.cli import app
from storage.models import AuditEntry, Unit
from tests.factories import make_unit_tree

Hotline = Callable[..., Result]
GROUP = -1001234567890


@pytest.fixture
def hotline(db_url: str, engine: Engine) -> Hotline:
    """Run `hotline ...` against the test database (with its unit tree); checks the exit code."""
    with Session(engine) as session:
        make_unit_tree(session)
        session.commit()
    runner = CliRunner()

    def run(*args: str, code: int = 0) -> Result:
        result = runner.invoke(app, list(args), env={"HOTLINE_DATABASE_URL": db_url})
        assert result.exit_code == code, (result.exit_code, result.output, result.stderr)
        return result

    return run


def chats(engine: Engine) -> dict[str, int]:
    with Session(engine) as session:
        rows = session.execute(select(Unit.code, Unit.telegram_chat_id)).all()
        return {code: chat for code, chat in rows if chat is not None}


def audit(engine: Engine) -> list[tuple[str, str, dict[str, object]]]:
    with Session(engine) as session:
        entries = session.scalars(select(AuditEntry).order_by(AuditEntry.id)).all()
        return [(e.action, e.actor_label, e.detail) for e in entries]


def test_link_a_units_group_chat_and_clear_it(hotline: Hotline, engine: Engine) -> None:
    said = hotline("units", "telegram-chat", "A1", "--chat-id", str(GROUP))
    assert said.output == f"unit A1: new cases are posted to Telegram chat {GROUP}\n"
    assert chats(engine) == {"A1": GROUP}
    again = hotline("units", "telegram-chat", "和平社区", "--chat-id", str(GROUP))
    assert again.output == f"unit A1 is already linked to Telegram chat {GROUP}\n"
    listed = json.loads(hotline("units", "list", "--json").output)
    assert [(u["code"], u["parent"], u["telegram_chat_id"]) for u in listed] == [
        ("C", None, None),
        ("SA", "C", None),
        ("SB", "C", None),
        ("A1", "SA", GROUP),
        ("A2", "SA", None),
        ("B1", "SB", None),
    ]
    assert f"telegram {GROUP}" in hotline("units", "list").output
    cleared = hotline("units", "telegram-chat", "A1", "--clear")
    assert cleared.output == f"unit A1: group chat {GROUP} forgotten\n"
    assert hotline("units", "telegram-chat", "A1", "--clear").output == (
        "unit A1 has no group chat: nothing to clear\n"
    )
    assert chats(engine) == {}
    detail = {"chat_id": GROUP, "via": "cli"}
    assert audit(engine) == [("link_unit_chat", "cli", detail), ("unlink_unit_chat", "cli", detail)]


def test_one_group_per_unit_and_one_unit_per_group(hotline: Hotline, engine: Engine) -> None:
    hotline("units", "telegram-chat", "A1", "--chat-id", str(GROUP))
    taken = hotline("units", "telegram-chat", "A2", "--chat-id", str(GROUP), code=1)
    assert taken.stderr == (
        f"error: Telegram chat {GROUP} is already the group of unit A1; unlink it first\n"
    )
    other = hotline("units", "telegram-chat", "A1", "--chat-id", "-100999", code=1)
    assert other.stderr == (
        f"error: unit A1 is already linked to Telegram chat {GROUP}; unlink it first\n"
    )
    assert chats(engine) == {"A1": GROUP}
    assert len(audit(engine)) == 1


def test_bad_input_is_refused_with_what_is_wrong(hotline: Hotline, engine: Engine) -> None:
    cases = [
        (["A1"], "error: give either --chat-id CHAT_ID or --clear\n"),
        (["A1", "--chat-id", "-5", "--clear"], "error: give either --chat-id CHAT_ID or --clear\n"),
        (
            ["A1", "--chat-id", "777"],
            "error: --chat-id 777: a group's chat id is negative (a positive id is a person)\n",
        ),
        (["ZZ", "--chat-id", "-5"], "error: no unit with code or name 'ZZ'\n"),
    ]
    for args, error in cases:
        assert hotline("units", "telegram-chat", *args, code=1).stderr == error
    assert chats(engine) == {} and audit(engine) == []
