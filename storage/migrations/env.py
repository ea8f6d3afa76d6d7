"""Alembic environment: migrates the engine handed over in config.attributes (or the configured one)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from storage.db import get_engine
from storage.migrate import include_object_for
from storage.models import Base

MIGRATION_LOCK = 0x686F746C  # any constant shared by every server of a deployment

config = context.config
engine = config.attributes.get("engine") or get_engine()

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_object=include_object_for(connection.dialect.name),
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Several servers may start at once: one migrates, the others wait and find the
            # schema at head. (SQLite transactions already begin IMMEDIATE.)
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        context.run_migrations()
    connection.commit()
