"""`hotline telegram poll`: the Telegram bot by long polling, for a machine without a public URL
(the server's webhook mode needs HOTLINE_PUBLIC_URL and HOTLINE_TELEGRAM_WEBHOOK_SECRET)."""

from __future__ import annotations

import asyncio
import signal

import typer

from bot.cli.common import current_settings, fail
from bot.runtime.configure import load_deployment
from config.checks import check_configuration
from config.loader import ConfigError
from config.logging import configure_logging
from handlers import HandlerError
from storage.db import make_engine
from storage.migrate import upgrade
from storage.site import bind

app = typer.Typer(help="Telegram: run the bot by long polling.", no_args_is_help=True)


@app.command("poll")
def poll_command(
    migrate: bool = typer.Option(True, "--migrate/--no-migrate", help="Upgrade the schema first."),
) -> None:
    """Answer Telegram by long polling until Ctrl-C (a webhook set before is deleted).

    Replies Telegram did not take and new-case posts wait in the outbox: run the outbox worker
    as well (`hotline serve` sends it unless HOTLINE_RUN_WORKER=false).
    """
    from bot.channels.telegram.application import poll  # python-telegram-bot: only for this command

    settings = current_settings()
    if not settings.telegram_bot_token:
        fail("set HOTLINE_TELEGRAM_BOT_TOKEN (the token BotFather gave)")
    configure_logging(settings.log_level, settings.log_json)
    try:
        check_configuration(settings)
        deployment = load_deployment(settings)
    except (ConfigError, HandlerError) as exc:
        fail(f"configuration: {exc}")
    engine = make_engine(settings.effective_database_url, pool_timeout=5)
    bind(engine, deployment)
    if migrate:
        upgrade(engine)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await poll(deployment, engine, stop)

    try:
        asyncio.run(run())
    finally:
        engine.dispose()
