"""Alembic environment: migrates the engine handed over in config.attributes (or the configured one)."""

from __future__ import annotations

from alembic import context

from storage.db import get_engine
from storage.migrate import include_object_for
from storage.models import Base

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
        context.run_migrations()
    connection.commit()
