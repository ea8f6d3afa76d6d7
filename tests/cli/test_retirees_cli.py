"""`hotline retirees import` and `export` against a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from bot.cli import app
from storage.models import AuditEntry, EmergencyContact, Retiree, RetireePhone
from tests.factories import make_unit_tree

HEADER = ["姓名", "电话", "社区", "独居", "紧急联系人", "紧急联系电话"]
Hotline = Callable[..., Result]


@pytest.fixture
def hotline(db_url: str) -> Hotline:
    """Run `hotline ...` against the test database; checks the exit code."""
    runner = CliRunner()

    def run(*args: str, code: int = 0) -> Result:
        result = runner.invoke(app, list(args), env={"HOTLINE_DATABASE_URL": db_url})
        assert result.exit_code == code, (result.exit_code, result.output, result.stderr)
        return result

    return run


@pytest.fixture
def units(engine: Engine) -> None:
    with Session(engine) as session:
        make_unit_tree(session)
        session.commit()


def write_csv(path: Path, rows: list[list[Any]]) -> Path:
    with path.open("w", encoding="utf-8-sig", newline="") as out:
        csv.writer(out).writerows([HEADER, *rows])
    return path


def count(engine: Engine, model: type[Any]) -> int:
    with Session(engine) as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def names(engine: Engine) -> list[str]:
    with Session(engine) as session:
        return list(session.scalars(select(Retiree.name).order_by(Retiree.id)))


def test_import_all_good(hotline: Hotline, engine: Engine, units: None, tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "名单.csv",
        [
            ["张桂兰", "13800000001", "和平社区", "是", "李明", "13900000001"],
            ["王建国", "13800000002、021-62345678", "A2", "否", "", ""],
        ],
    )
    result = hotline("retirees", "import", str(path))
    assert result.stdout == f"imported {path}: 2 created, 0 updated, 0 unchanged, 0 rejected\n"
    assert result.stderr == ""
    assert names(engine) == ["张桂兰", "王建国"]
    assert count(engine, RetireePhone) == 3
    assert count(engine, EmergencyContact) == 1
    with Session(engine) as session:
        entry = session.scalars(select(AuditEntry)).one()
    assert (entry.action, entry.actor_label) == ("import_retirees", "cli")
    assert entry.detail["file"] == "名单.csv"

    again = hotline("retirees", "import", str(path))
    assert "0 created, 0 updated, 2 unchanged, 0 rejected" in again.stdout


def test_import_with_rejected_rows(
    hotline: Hotline, engine: Engine, units: None, tmp_path: Path
) -> None:
    path = write_csv(
        tmp_path / "r.csv",
        [
            ["张桂兰", "13800000001", "和平社区", "是", "", ""],
            ["王建国", "12345", "A2", "否", "", ""],
            [],
            ["李秀英", "13800000003", "A1", "maybe", "李明", ""],
            ["赵四", "13800000001", "", "", "", ""],
            ["钱五", "13800000005", "", "", "", ""],
        ],
    )
    result = hotline("retirees", "import", str(path), code=2)
    assert result.stdout == f"imported {path}: 2 created, 0 updated, 0 unchanged, 3 rejected\n"
    assert result.stderr.splitlines() == [
        "row 3: 电话/phone: '12345' is not a valid phone number",
        "row 5: 独居/lives_alone: 'maybe' is not one of 是/否 (yes/no); "
        "紧急联系电话/emergency_phone: missing (紧急联系人/emergency_contact is given)",
        "row 6: 电话/phone: +8613800000001 also on row 2",
    ]
    assert names(engine) == ["张桂兰", "钱五"]


def test_import_file_error(hotline: Hotline, engine: Engine, units: None, tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("姓名,手机\n张桂兰,13800000001\n", encoding="utf-8")
    result = hotline("retirees", "import", str(path), code=1)
    assert result.stderr.startswith(f"error: {path}: unknown column '手机'; found: '姓名', '手机'")
    assert result.stdout == ""
    assert count(engine, Retiree) == 0
    assert count(engine, AuditEntry) == 0


def test_import_unsupported_file_type(hotline: Hotline, tmp_path: Path) -> None:
    path = tmp_path / "r.xls"
    path.write_bytes(b"")
    result = hotline("retirees", "import", str(path), code=1)
    assert result.stderr == f"error: {path}: unsupported file type '.xls'; accepted: .xlsx, .csv\n"


@pytest.mark.parametrize("suffix", [".xlsx", ".csv"])
def test_export_then_import(
    hotline: Hotline, engine: Engine, units: None, tmp_path: Path, suffix: str
) -> None:
    source = write_csv(
        tmp_path / "in.csv",
        [
            ["张桂兰", "13800000001,13800000009", "和平社区", "是", "李明", "13900000001"],
            ["王建国", "13800000002", "", "否", "", ""],
        ],
    )
    hotline("retirees", "import", str(source))
    out = tmp_path / f"out{suffix}"
    assert hotline("retirees", "export", str(out)).stdout == f"exported 2 retirees to {out}\n"
    assert out.exists()
    result = hotline("retirees", "import", str(out))
    assert "0 created, 0 updated, 2 unchanged, 0 rejected" in result.stdout
    with Session(engine) as session:
        actions = list(session.scalars(select(AuditEntry.action).order_by(AuditEntry.id)))
    assert actions == ["import_retirees", "export_retirees", "import_retirees"]


def test_export_unsupported_file_type(hotline: Hotline, tmp_path: Path) -> None:
    result = hotline("retirees", "export", str(tmp_path / "out.json"), code=1)
    assert "unsupported file type '.json'" in result.stderr
