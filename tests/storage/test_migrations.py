"""Migrations: upgrade from empty, downgrade to base, upgrade again; models and migrations agree."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect

from storage.migrate import current_revision, downgrade, include_object_for, upgrade
from storage.models import Base

HEAD = "0002"


def _tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names()) - {"alembic_version"}


def test_upgrade_downgrade_upgrade(engine: Engine) -> None:
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
