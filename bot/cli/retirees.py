"""`hotline retirees`: import the registry of retirees from, and export it to, .xlsx or .csv."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bot.cli.common import cli_transaction, fail
from storage.registry_format import RegistryFileError
from storage.registry_io import export_retirees, import_retirees

app = typer.Typer(
    help="The registry of retirees: import from and export to .xlsx or .csv files.",
    no_args_is_help=True,
)

EXIT_ROWS_REJECTED = 2
FileArgument = Annotated[Path, typer.Argument(help="An .xlsx or .csv file.", show_default=False)]


@app.command("import")
def import_command(file: FileArgument) -> None:
    """Import retirees; rows whose phone is registered update that person.

    Exit code 0: every row imported; 2: some rows rejected (the others imported); 1: bad file.
    """
    try:
        with cli_transaction() as session:
            report = import_retirees(session, file, actor_label="cli")
    except RegistryFileError as exc:
        fail(str(exc))
    typer.echo(
        f"imported {file}: {report.created} created, {report.updated} updated, "
        f"{report.unchanged} unchanged, {len(report.rejected)} rejected"
    )
    for rejected in report.rejected:
        typer.echo(f"row {rejected.row}: {rejected.reason}", err=True)
    if report.rejected:
        raise typer.Exit(EXIT_ROWS_REJECTED)


@app.command("export")
def export_command(file: FileArgument) -> None:
    """Write every retiree to FILE in the import format (Chinese headers)."""
    try:
        with cli_transaction() as session:
            count = export_retirees(session, file, actor_label="cli")
    except RegistryFileError as exc:
        fail(str(exc))
    typer.echo(f"exported {count} retirees to {file}")
