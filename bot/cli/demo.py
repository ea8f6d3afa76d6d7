"""`hotline seed-demo`: demo data to try the system with."""

from __future__ import annotations

import typer

from bot.cli.common import cli_transaction
from storage.demo import DEMO_PASSWORD, database_is_empty, seed_demo


def seed_demo_command(
    if_empty: bool = typer.Option(False, "--if-empty", help="Only when the database has no units."),
) -> None:
    """Add a demo center, 2 stations, 4 communities, staff, volunteers and ~30 retirees."""
    with cli_transaction() as session:
        if if_empty and not database_is_empty(session):
            typer.echo("the database already has data; demo data not added")
            return
        report = seed_demo(session)
    typer.echo(
        f"demo data: {report.units} units, {report.staff} staff, "
        f"{report.retirees} retirees, {report.cases} cases, {report.campaigns} visit round added"
    )
    if report.staff:
        typer.echo(f"demo users (admin, li.east, vol.sun, ...) have the password {DEMO_PASSWORD}")
