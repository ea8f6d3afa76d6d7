"""Telegram (python-telegram-bot 22): retirees write to the bot; volunteers and staff get new
cases posted with a Claim button and work them from the chat; a unit's group chat gets its
unit's cases.

- ``application.py``: the bot application and its handlers, started inside the app (webhook) or by
  ``hotline telegram poll``; ``common.py``: what the handlers share (the ``Hotline`` services,
  sending, de-duplication); ``retirees.py``, ``staff.py``, ``groups.py``: the handlers of
  retirees, of volunteers and staff, of a unit's group chat; ``posts.py``: the cases posted;
  ``sender.py``: the outbox's Telegram messages.

Webhook mode: `POST /telegram/webhook`, the secret header compared in constant time, each update
handed to the application's handlers. `hotline telegram poll` runs the same handlers by long
polling, for a machine without a public URL. A redelivered update (same update_id) changes
nothing twice: a retiree's turn carries provider_id "tg:<update_id>" (the engine answers a repeat
from what it saved), anything else records that id in the messages table in the transaction of
what it does. Replies are sent at once; one Telegram did not take for a passing reason (flood
limit, network) goes to the outbox for the worker to retry.
"""

from __future__ import annotations

import hmac

from fastapi import FastAPI, HTTPException, Request, Response
from telegram import Update

from bot.channels.base import Mounted, OutboxSenders, without_nul
from bot.channels.telegram.application import (
    SECRET_HEADER,
    SECRET_PATTERN,
    WEBHOOK_PATH,
    BotStartup,
    build_application,
)
from bot.channels.telegram.common import CHANNEL, FAILED_UPDATES, HOTLINE_KEY, Hotline
from bot.channels.telegram.posts import new_case_announcer
from bot.conversation.deployment import Deployment
from config.settings import Settings


def mount(app: FastAPI, deployment: Deployment) -> Mounted:
    settings = deployment.settings
    if not settings.telegram_enabled:
        return Mounted(CHANNEL, enabled=False, why="no HOTLINE_TELEGRAM_BOT_TOKEN")
    # New cases are posted to volunteers and staff whenever there is a bot (webhook or polling).
    announce = [new_case_announcer(deployment)]
    secret = settings.telegram_webhook_secret
    if not secret:
        return Mounted(
            CHANNEL,
            enabled=False,
            why="no HOTLINE_TELEGRAM_WEBHOOK_SECRET (or run `hotline telegram poll`)",
            on_filed=announce,
        )
    if not SECRET_PATTERN.match(secret):
        return Mounted(
            CHANNEL,
            enabled=False,
            why="HOTLINE_TELEGRAM_WEBHOOK_SECRET may only have A-Z, a-z, 0-9, _ and - (1-256)",
            on_filed=announce,
        )
    application = build_application(settings)
    app.state.telegram = application
    expected = secret.encode()
    bring_up = BotStartup(application, settings)

    @app.post(WEBHOOK_PATH, include_in_schema=False)
    async def telegram_webhook(request: Request) -> Response:
        given = request.headers.get(SECRET_HEADER, "").encode()
        if not hmac.compare_digest(given, expected):
            raise HTTPException(403, detail="wrong or missing secret token")
        try:
            # A NUL cannot be stored (PostgreSQL): taken out of every text, as a refused update
            # would only be delivered again. JSON nested too deep to parse is no update either.
            data = without_nul(await request.json())
            update = Update.de_json(data, application.bot)
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
            raise HTTPException(400, detail="not a Telegram update") from None
        if not await bring_up.ready():
            raise HTTPException(503, detail="the Telegram bot is not ready; deliver again")
        await application.process_update(update)
        if application.bot_data.get(FAILED_UPDATES, {}).pop(update.update_id, None) is not None:
            raise HTTPException(503, detail="the database failed; deliver again")
        return Response(status_code=200)

    async def startup() -> None:
        application.bot_data[HOTLINE_KEY] = Hotline(app.state.engine, app.state.conversations)
        await bring_up.start()

    return Mounted(
        CHANNEL,
        enabled=True,
        on_startup=[startup],
        on_shutdown=[bring_up.stop],
        on_filed=announce,
    )


def senders(settings: Settings) -> OutboxSenders:
    """The outbox's Telegram messages (replies, posts, their edits) go out with the bot token."""
    from bot.channels.telegram.sender import TelegramSender

    if not settings.telegram_enabled:
        return OutboxSenders(off={CHANNEL: "HOTLINE_TELEGRAM_BOT_TOKEN"})
    return OutboxSenders(on={CHANNEL: TelegramSender(settings)})


__all__ = ["mount", "new_case_announcer", "senders"]
