"""`hotline db ...`: schema migrations."""

from __future__ import annotations

import typer

from bot.cli.common import open_engine
from storage.migrate import current_revision, upgrade

app = typer.Typer(help="The database schema.", no_args_is_help=True)


@app.command("upgrade")
def upgrade_command() -> None:
    """Migrate the database to the newest schema (also done by `hotline serve`)."""
    engine = open_engine()
    try:
        upgrade(engine)
        typer.echo(f"database at revision {current_revision(engine)}")
    finally:
        engine.dispose()


@app.command("current")
def current_command() -> None:
    """Print the schema revision the database is at."""
    engine = open_engine()
    try:
        typer.echo(current_revision(engine) or "empty (run `hotline db upgrade`)")
    finally:
        engine.dispose()
