"""`hotline db`, `seed-demo`, `users` and `cases`: the commands against a real database."""

from __future__ import annotations

import json
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from bot.cli import app
from storage.migrate import alembic_config
from storage.models import (
    AuditEntry,
    Case,
    CaseStatus,
    Retiree,
    RetireePhone,
    RetireeStatus,
    Staff,
    Unit,
)
from storage.passwords import verify_password


@pytest.fixture
def hotline(db_url: str):
    """Run `hotline ...` against the test database; returns the result."""
    runner = CliRunner()

    def run(*args: str, input: str | None = None, code: int = 0):
        result = runner.invoke(app, list(args), env={"HOTLINE_DATABASE_URL": db_url}, input=input)
        assert result.exit_code == code, (result.exit_code, result.output, result.stderr)
        return result

    return run


@pytest.fixture
def demo(hotline) -> None:
    hotline("seed-demo")


def count(engine: Engine, model: type) -> int:
    with Session(engine) as s:
        return s.scalar(select(func.count()).select_from(model)) or 0


def test_db_upgrade_and_current(hotline) -> None:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None and head != "0001"
    assert f"revision {head}" in hotline("db", "upgrade").output
    assert hotline("db", "current").output.strip() == head


def test_seed_demo_is_safe_to_run_twice(hotline, engine: Engine) -> None:
    first = hotline("seed-demo").output
    assert "7 units, 6 staff, 30 retirees, 6 cases, 1 visit round added" in first
    counts = [count(engine, m) for m in (Unit, Staff, Retiree, Case)]
    assert counts == [7, 6, 30, 6]
    assert (
        "0 units, 0 staff, 0 retirees, 0 cases, 0 visit round added" in hotline("seed-demo").output
    )
    assert "already has data" in hotline("seed-demo", "--if-empty").output
    assert [count(engine, m) for m in (Unit, Staff, Retiree, Case)] == counts


def test_users_add_with_password_on_stdin(hotline, engine: Engine, demo) -> None:
    out = hotline(
        "users",
        "add",
        "--username",
        "wu",
        "--role",
        "volunteer",
        "--unit",
        "C-HP",
        "--unit",
        "幸福社区退管站",
        "--password-stdin",
        input="a-long-secret\n",
    ).output
    assert "added volunteer wu serving C-HP, 幸福社区退管站" in out
    with Session(engine) as s:
        wu = s.scalars(select(Staff).where(Staff.username == "wu")).one()
        assert sorted(u.code for u in wu.units) == ["C-HP", "C-XF"]
        assert verify_password(wu.password_hash, "a-long-secret")
        assert not verify_password(wu.password_hash, "wrong-secret")
    hotline(
        "users", "reset-password", "--username", "wu", "--password-stdin", input="another-secret\n"
    )
    with Session(engine) as s:
        wu = s.scalars(select(Staff).where(Staff.username == "wu")).one()
        assert verify_password(wu.password_hash, "another-secret")


def test_users_add_refusals(hotline, demo) -> None:
    args = ["users", "add", "--username", "x", "--role", "staff", "--password-stdin"]
    r = hotline(*args, "--unit", "NOPE", input="long-enough-pw\n", code=1)
    assert "no unit with code or name 'NOPE'" in r.stderr
    r = hotline(*args, "--unit", "C-HP", input="short\n", code=1)
    assert "at least 8 characters" in r.stderr
    r = hotline(
        *[a if a != "x" else "admin" for a in args],
        "--unit",
        "C-HP",
        input="long-enough-pw\n",
        code=1,
    )
    assert "already exists" in r.stderr
    r = hotline("users", "add", "--username", "y", "--role", "boss", "--unit", "C-HP", code=2)
    assert "boss" in r.stderr


def test_file_list_show_claim_resolve_close(hotline, engine: Engine, demo) -> None:
    out = hotline(
        "cases",
        "file",
        "--phone",
        "138 0000 0001",
        "--category",
        "help_request",
        "--text",
        "灯泡坏了，想请人来换一下",
    ).output
    number = out.split()[1]
    year = datetime.now(ZoneInfo("Asia/Shanghai")).year
    assert number == f"{year}-000007"  # after the 6 demo cases
    assert "(help_request, priority" in out and "in the queue of C-HP" in out
    rows = json.loads(hotline("cases", "list", "--json", "--status", "open").output)
    assert number in [r["number"] for r in rows]
    row = next(r for r in rows if r["number"] == number)
    assert {"number", "category", "priority", "status", "unit", "retiree", "created_at"} <= set(row)
    assert row["category"] == "help_request" and row["status"] == "open" and row["unit"] == "C-HP"
    assert row["retiree"]["name"]
    hotline("cases", "claim", number, "--as", "vol.sun")
    r = hotline("cases", "close", number, "--as", "vol.sun", code=1)
    assert "cannot be closed: it is claimed" in r.stderr
    hotline("cases", "resolve", number, "--as", "vol.sun", "--outcome", "换好了")
    r = hotline("cases", "close", number, "--as", "vol.sun", code=1)
    assert "only staff can do that" in r.stderr
    assert f"{number} is now closed" in hotline("cases", "close", number, "--as", "li.east").output
    shown = json.loads(hotline("cases", "show", number, "--json").output)
    assert shown["status"] == "closed" and shown["outcome"] == "换好了"
    assert [e["action"] for e in shown["events"]] == ["file", "claim", "resolve", "close"]
    assert shown["retiree"]["phones"] == ["+8613800000001"]
    with Session(engine) as s:
        viewed = s.scalars(select(AuditEntry).where(AuditEntry.action == "view_retiree")).all()
        assert [v.detail["case"] for v in viewed] == [number]


def test_claim_next_and_release(hotline, engine: Engine, demo) -> None:
    out = hotline("cases", "claim-next", "--as", "chen.heping").output
    assert out.startswith("claimed ")
    number = out.split()[1]
    hotline("cases", "release", number, "--as", "chen.heping", "--reason", "wrong queue")
    with Session(engine) as s:
        case = s.scalars(select(Case).where(Case.number == number)).one()
        assert case.status == CaseStatus.OPEN and case.assignee_id is None


def test_file_for_unknown_caller(hotline, demo) -> None:
    r = hotline(
        "cases", "file", "--phone", "13912345678", "--category", "callback", "--text", "?", code=1
    )
    assert "no retiree has the phone 13912345678; give --unit" in r.stderr
    out = hotline(
        "cases",
        "file",
        "--phone",
        "13912345678",
        "--category",
        "callback",
        "--text",
        "?",
        "--unit",
        "C-GM",
    ).output
    assert "in the queue of C-GM" in out


def test_staff_file_for_a_number_whose_profile_is_inactive(hotline, engine: Engine, demo) -> None:
    """A caller on a line is not known by an inactive profile, but staff filing by hand are
    shown it: the case goes to that retiree, not to an unknown caller."""
    with Session(engine) as s:
        retiree = s.scalars(
            select(Retiree).join(RetireePhone).where(RetireePhone.number == "+8613800000001")
        ).one()
        retiree.status = RetireeStatus.INACTIVE
        name = retiree.name
        s.commit()
    out = hotline(
        "cases", "file", "--phone", "13800000001", "--category", "callback", "--text", "?"
    ).output
    number = out.split()[1]
    shown = json.loads(hotline("cases", "show", number, "--json").output)
    assert shown["retiree"]["name"] == name


def test_cases_refusals_are_clear(hotline, demo) -> None:
    r = hotline(
        "cases", "file", "--phone", "12", "--category", "help_request", "--text", "x", code=1
    )
    assert "'12' is not a valid phone number" in r.stderr
    r = hotline(
        "cases", "file", "--phone", "13800000001", "--category", "karaoke", "--text", "x", code=1
    )
    assert "unknown category 'karaoke'" in r.stderr
    r = hotline("cases", "show", "2026-999999", code=1)
    assert "no case numbered 2026-999999" in r.stderr
    r = hotline("cases", "claim", "2026-000001", "--as", "nobody", code=1)
    assert "no user named 'nobody'" in r.stderr
    r = hotline("cases", "list", "--status", "lost", code=2)
    assert "lost" in r.stderr


def test_a_config_typo_is_reported_with_file_and_key(db_url: str, tmp_path) -> None:
    from pathlib import Path

    from config.settings import CONFIG_DIR

    text = Path(CONFIG_DIR, "categories.yml").read_text(encoding="utf-8")
    (tmp_path / "categories.yml").write_text(
        text.replace("default_priority: 3", "default_priority: 7", 1), encoding="utf-8"
    )
    result = CliRunner().invoke(
        app,
        ["cases", "list"],
        env={"HOTLINE_DATABASE_URL": db_url, "HOTLINE_CONFIG_DIR": str(tmp_path)},
    )
    assert result.exit_code == 1
    assert "categories.yml" in result.stderr
    assert "categories.medication_reimbursement.default_priority" in result.stderr
    assert "less than or equal to 3" in result.stderr


def test_a_catalog_mistake_stops_every_command(db_url: str, tmp_path) -> None:
    import shutil

    from config.settings import CONFIG_DIR

    shutil.copytree(CONFIG_DIR, tmp_path / "config")
    en = tmp_path / "config" / "messages" / "en" / "common.yml"
    en.write_text(en.read_text(encoding="utf-8").replace("{number}", "{numbr}"), encoding="utf-8")
    result = CliRunner().invoke(
        app,
        ["cases", "list"],
        env={"HOTLINE_DATABASE_URL": db_url, "HOTLINE_CONFIG_DIR": str(tmp_path / "config")},
    )
    assert result.exit_code == 1
    assert "messages/en/common.yml: case.filed: placeholders" in result.stderr
