"""What every `hotline` command shares: the database of the current settings and error output."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import typer
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from config.settings import Settings
from storage.db import make_engine, transaction
from storage.site import Site, bind


def current_settings() -> Settings:
    """Read the settings afresh (environment and .env), so each invocation sees its own."""
    return Settings()


def open_engine() -> Engine:
    """The configured database, serving the configured deployment (storage.site)."""
    settings = current_settings()
    engine = make_engine(settings.effective_database_url)
    bind(engine, Site.load(settings))
    return engine


@contextmanager
def cli_transaction() -> Iterator[Session]:
    """One transaction for one command: committed when the command succeeds."""
    engine = open_engine()
    try:
        with transaction(engine) as session:
            yield session
    finally:
        engine.dispose()


def fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)
