"""Migrations: upgrade from empty, downgrade to base, upgrade again; models and migrations agree."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import IntegrityError

from storage.db import make_engine
from storage.migrate import (
    alembic_config,
    current_revision,
    downgrade,
    include_object_for,
    upgrade,
)
from storage.models import Base
from tests.pg_server import PostgresServer

# The newest revision, from the scripts themselves (a new migration needs no edit here).
HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()


def _tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names()) - {"alembic_version"}


def test_upgrade_downgrade_upgrade(engine: Engine) -> None:
    assert HEAD is not None and HEAD >= "0003"
    # The `engine` fixture starts at head (copied from a migrated template).
    assert current_revision(engine) == HEAD
    assert _tables(engine) == set(Base.metadata.tables)
    downgrade(engine, "base")
    assert current_revision(engine) is None
    assert _tables(engine) == set()
    upgrade(engine)
    assert current_revision(engine) == HEAD
    assert _tables(engine) == set(Base.metadata.tables)


def test_models_and_migrations_agree(engine: Engine) -> None:
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={"compare_type": True, "include_object": include_object_for(conn.dialect.name)},
        )
        diff = compare_metadata(context, Base.metadata)
    assert diff == []


@pytest.mark.postgres
def test_servers_starting_together_migrate_once(pg_server: PostgresServer) -> None:
    """Two servers run `hotline db upgrade` at once on an empty database: one migrates, the
    other waits for it and finds the schema at head. (Separate processes, as in production:
    Alembic's context is global to a process.)"""
    url = pg_server.create_database("two_servers")
    hotline = Path(sys.executable).with_name("hotline")
    env = {**os.environ, "HOTLINE_DATABASE_URL": url}
    servers = [
        subprocess.Popen(
            [str(hotline), "db", "upgrade"], env=env, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    results = [(p.wait(timeout=120), p.stderr.read() if p.stderr else "") for p in servers]
    assert [code for code, _ in results] == [0, 0], results
    engine = make_engine(url)
    assert current_revision(engine) == HEAD
    engine.dispose()
    pg_server.drop_database("two_servers")


def _outbox_row(engine: Engine, status: str, key: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO outbox (channel, address, payload, idempotency_key, priority, status,"
                " attempts, next_attempt_at, last_error, created_at) VALUES ('voice', '+8613800000001',"
                " '{}', :key, 1, :status, 0, :now, '', :now)"
            ),
            {"key": key, "status": status, "now": datetime(2026, 12, 5, tzinfo=UTC)},
        )


def _outbox_statuses(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.scalars(text("SELECT status FROM outbox ORDER BY id")))


def test_0006_lets_the_outbox_keep_cancelled_items(engine: Engine) -> None:
    """From 0006 an item called off stays in the outbox as "cancelled"; a downgrade deletes such
    items (what the code before it did to them) and the old CHECK refuses the status again."""
    _outbox_row(engine, "sent", "a")
    _outbox_row(engine, "cancelled", "b")
    with pytest.raises(IntegrityError):
        _outbox_row(engine, "called off", "c")
    downgrade(engine, "0005")
    assert _outbox_statuses(engine) == ["sent"]
    with pytest.raises(IntegrityError):
        _outbox_row(engine, "cancelled", "d")
    upgrade(engine)
    _outbox_row(engine, "cancelled", "e")
    assert _outbox_statuses(engine) == ["sent", "cancelled"]
