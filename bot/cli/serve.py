"""`hotline serve`: migrate, then run the app on uvicorn, in one process or several.

With ``--workers N`` (or HOTLINE_WORKERS) uvicorn runs N worker processes on the one port,
each building the app afresh from the environment (`worker_app`, an import string: a built
app cannot be handed to another process). What must happen once happens here first, in the
parent: the configuration is checked, the schema migrated, the console's signing key made.
The outbox worker and the idle sweep then run in one worker only (bot.runtime.app.BackgroundWork).
A turn holds Python's interpreter lock while it runs, so one process serves about one core's
worth of turns: N near the number of cores lets the others work.
"""

from __future__ import annotations

import os
from datetime import datetime
from zoneinfo import ZoneInfo

import structlog
import typer
import uvicorn
from fastapi import FastAPI

from bot.cli.common import current_settings
from bot.runtime.app import create_app
from bot.runtime.configure import load_deployment
from config.checks import check_configuration
from config.loader import ConfigError
from config.logging import configure_logging
from config.settings import Settings
from config.working_days import FILE as WORKING_DAYS
from config.working_days import load_working_days, uncovered_years
from console.auth import secret_key
from handlers import HandlerError
from storage.db import make_engine
from storage.migrate import upgrade

log = structlog.get_logger(__name__)

WORKER_APP = "bot.cli.serve:worker_app"


def serve_command(
    host: str | None = typer.Option(None, "--host", help="Default: HOTLINE_HOST or 127.0.0.1."),
    port: int | None = typer.Option(None, "--port", help="Default: HOTLINE_PORT or 8000."),
    workers: int | None = typer.Option(
        None,
        "--workers",
        min=1,
        max=64,
        help="Processes on the port. Default: HOTLINE_WORKERS or 1.",
    ),
    migrate: bool = typer.Option(True, "--migrate/--no-migrate", help="Upgrade the schema first."),
) -> None:
    """Serve the webhooks, API and console."""
    settings = current_settings()
    configure_logging(settings.log_level, settings.log_json)
    try:
        check_configuration(settings)
        load_deployment(settings)  # the configuration, and the handlers' categories and texts
    except (ConfigError, HandlerError) as exc:
        typer.echo(f"error: configuration: {exc}", err=True)
        raise typer.Exit(1) from exc
    _warn_of_unknown_holidays(settings)
    engine = make_engine(settings.effective_database_url, pool_timeout=5)
    if migrate:
        upgrade(engine)
    listen = {"host": host or settings.host, "port": port or settings.port}
    processes = workers or settings.workers
    if processes == 1:
        uvicorn.run(create_app(settings, engine), log_config=None, proxy_headers=True, **listen)
        return
    engine.dispose()  # each worker opens its own
    secret_key(settings)  # made once here, not raced by the workers
    # The workers read their settings from the environment, which they inherit.
    os.environ["HOTLINE_WORKERS"] = str(processes)
    uvicorn.run(
        WORKER_APP,
        factory=True,
        workers=processes,
        log_config=None,
        proxy_headers=True,
        **listen,
    )


def _warn_of_unknown_holidays(settings: Settings) -> None:
    listed = load_working_days(settings.config_dir / WORKING_DAYS)
    today = datetime.now(ZoneInfo(settings.timezone)).date()
    for year in uncovered_years(today, listed):
        log.warning(
            "working_days_unknown",
            year=year,
            why="chinesecalendar does not cover it and config/working_days.yml does not list "
            "it: working-day deadlines are estimated Monday to Friday",
        )


def worker_app() -> FastAPI:
    """The app of one worker process of `hotline serve --workers N` (uvicorn calls this in
    each): the settings from the environment, the schema already migrated by the parent."""
    settings = Settings()
    configure_logging(settings.log_level, settings.log_json)
    return create_app(settings)
