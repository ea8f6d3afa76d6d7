"""The CHECK constraints of the migrated database list exactly the values of the Python enums,
and the database itself refuses any other value (on PostgreSQL and SQLite)."""

from __future__ import annotations

import enum
import re
from typing import Any

import pytest
from sqlalchemy import JSON, Boolean, Date, Engine, Enum, Integer, String, Table, text
from sqlalchemy.exc import IntegrityError

from storage.db import make_engine
from storage.models import (
    Base,
    CampaignKind,
    CampaignStatus,
    CaseStatus,
    CheckInStatus,
    Direction,
    FollowUpStatus,
    Hardship,
    MessageStatus,
    OutboxStatus,
    RetireeStatus,
    Role,
    SelfCare,
    TargetStatus,
    UnitLevel,
)
from storage.types import UTCDateTime

# (table, column, enum): every column stored with storage.models._enum.
ENUM_COLUMNS: list[tuple[str, str, type[enum.Enum]]] = [
    ("units", "level", UnitLevel),
    ("retirees", "self_care", SelfCare),
    ("retirees", "hardship", Hardship),
    ("retirees", "status", RetireeStatus),
    ("staff", "role", Role),
    ("cases", "status", CaseStatus),
    ("messages", "direction", Direction),
    ("messages", "status", MessageStatus),
    ("outbox", "status", OutboxStatus),
    ("check_ins", "status", CheckInStatus),
    ("follow_ups", "status", FollowUpStatus),
    ("campaigns", "kind", CampaignKind),
    ("campaigns", "status", CampaignStatus),
    ("campaign_targets", "status", TargetStatus),
]
BAD = "not_a_value"

Found = dict[tuple[str, str], tuple[str, frozenset[str]]]


def expected() -> Found:
    """(table, column) → (constraint name, the enum's values), as the naming convention names it."""
    found: Found = {}
    for table, column, enum_class in ENUM_COLUMNS:
        sa_type = Base.metadata.tables[table].c[column].type
        assert isinstance(sa_type, Enum)
        name = f"ck_{table}_{sa_type.name}"
        found[(table, column)] = (name, frozenset(str(m.value) for m in enum_class))
    return found


def test_every_enum_column_is_checked_here() -> None:
    in_models = {
        (table.name, column.name, column.type.enum_class)
        for table in Base.metadata.sorted_tables
        for column in table.columns
        if isinstance(column.type, Enum)
    }
    assert in_models == set(ENUM_COLUMNS)


# --- the constraints list the enum's values -----------------------------------------------

PG_LIST_CHECK = re.compile(r"^CHECK \(\(\((\w+)\)::text = ANY \(\(ARRAY\[(.*)\]\)::text\[\]\)\)\)$")
PG_VALUE = re.compile(r"'((?:[^']|'')*)'::character varying")
SQLITE_IN_CHECK = re.compile(r"CONSTRAINT (\w+) CHECK \((\w+) IN \(([^)]*)\)\)")
SQLITE_VALUE = re.compile(r"'((?:[^']|'')*)'")


def _unquote(values: list[str]) -> frozenset[str]:
    return frozenset(value.replace("''", "'") for value in values)


@pytest.mark.postgres
def test_postgres_check_constraints_match_the_enums(postgres_url: str) -> None:
    engine = make_engine(postgres_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT rel.relname, con.conname, pg_get_constraintdef(con.oid) "
                    "FROM pg_constraint con JOIN pg_class rel ON rel.oid = con.conrelid "
                    "JOIN pg_namespace ns ON ns.oid = rel.relnamespace "
                    "WHERE con.contype = 'c' AND ns.nspname = current_schema()"
                )
            ).all()
    finally:
        engine.dispose()
    found: Found = {}
    for table, name, definition in rows:
        match = PG_LIST_CHECK.match(definition)
        if match is not None:  # a list of allowed values (not e.g. "priority BETWEEN 1 AND 3")
            column, values = match.groups()
            found[(table, column)] = (name, _unquote(PG_VALUE.findall(values)))
    assert found == expected()


def test_sqlite_check_constraints_match_the_enums(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    try:
        with engine.connect() as conn:
            tables = conn.execute(
                text("SELECT name, sql FROM sqlite_master WHERE type = 'table'")
            ).all()
    finally:
        engine.dispose()
    found: Found = {}
    for table, sql in tables:
        for name, column, values in SQLITE_IN_CHECK.findall(sql or ""):
            found[(table, column)] = (name, _unquote(SQLITE_VALUE.findall(values)))
    assert found == expected()


# --- the database refuses other values ----------------------------------------------------


def _row(table: Table, enum_column: str, value: str, ids: dict[str, int]) -> dict[str, Any]:
    """A value for every NOT NULL column of ``table`` (what an INSERT must give)."""
    row: dict[str, Any] = {}
    for column in table.columns:
        if column.primary_key or column.nullable:
            continue
        sa_type = column.type
        if column.name == enum_column:
            row[column.name] = value
        elif isinstance(sa_type, Enum):
            row[column.name] = sa_type.enums[0]
        elif column.foreign_keys:
            (target,) = {fk.column.table.name for fk in column.foreign_keys}
            row[column.name] = ids[target]
        elif isinstance(sa_type, Boolean):
            row[column.name] = False
        elif isinstance(sa_type, Integer):
            row[column.name] = 1
        elif isinstance(sa_type, Date):
            row[column.name] = "2026-06-01"
        elif isinstance(sa_type, UTCDateTime):
            row[column.name] = "2026-06-01 02:00:00"
        elif isinstance(sa_type, JSON):
            row[column.name] = "{}"
        else:
            assert isinstance(sa_type, String)
            row[column.name] = "x"
    return row


def _insert(engine: Engine, table_name: str, row: dict[str, Any]) -> None:
    columns = ", ".join(row)
    params = ", ".join(f":{name}" for name in row)
    with engine.begin() as conn:
        conn.execute(text(f"INSERT INTO {table_name} ({columns}) VALUES ({params})"), row)


@pytest.mark.parametrize(("table", "column", "enum_class"), ENUM_COLUMNS)
def test_database_refuses_a_value_not_in_the_enum(
    engine: Engine, table: str, column: str, enum_class: type[enum.Enum]
) -> None:
    _insert(
        engine,
        "units",
        {"code": "U1", "level": UnitLevel.CENTER.value, "name_zh": "中心", "name_en": "Center"},
    )
    with engine.connect() as conn:
        unit_id = conn.execute(text("SELECT id FROM units WHERE code = 'U1'")).scalar_one()
    ids = {"units": unit_id}
    targets = {fk.column.table.name for fk in Base.metadata.tables[table].foreign_keys}
    if "retirees" in targets:
        retiree = _row(Base.metadata.tables["retirees"], "status", "active", ids)
        _insert(engine, "retirees", retiree)
        with engine.connect() as conn:
            ids["retirees"] = conn.execute(text("SELECT id FROM retirees")).scalar_one()
    if "cases" in targets:
        case_row = _row(Base.metadata.tables["cases"], "status", CaseStatus.OPEN.value, ids)
        case_row["number"] = "2026-000001"
        _insert(engine, "cases", case_row)
        with engine.connect() as conn:
            ids["cases"] = conn.execute(text("SELECT id FROM cases")).scalar_one()
    if "campaigns" in targets:
        _insert(engine, "campaigns", _row(Base.metadata.tables["campaigns"], "kind", "notice", ids))
        with engine.connect() as conn:
            ids["campaigns"] = conn.execute(text("SELECT id FROM campaigns")).scalar_one()
    sa_table = Base.metadata.tables[table]
    constraint, _ = expected()[(table, column)]

    with pytest.raises(IntegrityError, match=constraint):
        _insert(engine, table, _row(sa_table, column, BAD, ids))
    # The same row with a value of the enum goes in: the constraint was the only objection.
    good = next(iter(enum_class)).value
    _insert(engine, table, _row(sa_table, column, str(good), ids))
    with engine.connect() as conn:
        count = conn.execute(
            text(f"SELECT count(*) FROM {table} WHERE {column} = :v"), {"v": good}
        ).scalar_one()
    assert count >= 1
