"""`hotline serve`: migrate, then run the app on uvicorn."""

from __future__ import annotations

import typer
import uvicorn

from bot.app import create_app
from bot.cli.common import current_settings
from bot.engine import load_services
from config.checks import check_configuration
from config.loader import ConfigError
from config.logging import configure_logging
from handlers import HandlerError
from storage.db import make_engine
from storage.migrate import upgrade


def serve_command(
    host: str | None = typer.Option(None, "--host", help="Default: HOTLINE_HOST or 127.0.0.1."),
    port: int | None = typer.Option(None, "--port", help="Default: HOTLINE_PORT or 8000."),
    migrate: bool = typer.Option(True, "--migrate/--no-migrate", help="Upgrade the schema first."),
) -> None:
    """Serve the webhooks, API and console."""
    settings = current_settings()
    configure_logging(settings.log_level, settings.log_json)
    try:
        check_configuration(settings)
        load_services(settings)  # the handlers' categories and texts
    except (ConfigError, HandlerError) as exc:
        typer.echo(f"error: configuration: {exc}", err=True)
        raise typer.Exit(1) from exc
    engine = make_engine(settings.effective_database_url, pool_timeout=5)
    if migrate:
        upgrade(engine)
    uvicorn.run(
        create_app(settings, engine),
        host=host or settings.host,
        port=port or settings.port,
        log_config=None,
        proxy_headers=True,
    )
