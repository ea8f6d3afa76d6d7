"""Migrations: upgrade from empty, downgrade to base, upgrade again; models and migrations agree."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect

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
