"""The Telegram bot application: its handlers, its start (which never stops the hotline from
starting when Telegram cannot be reached), and long polling (`hotline telegram poll`)."""

from __future__ import annotations

import asyncio
import contextlib
import re

import structlog
from sqlalchemy import Engine
from telegram import Update
from telegram.error import TelegramError
from telegram.ext import (
    Application,
    ApplicationHandlerStop,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from bot.channels.base import Conversations
from bot.channels.telegram.common import (
    FAILED_UPDATES,
    HOTLINE_KEY,
    STAFF_FILTER_KEY,
    Hotline,
    StaffFilter,
    is_private,
    language_of,
)
from bot.channels.telegram.posts import new_case_announcer
from bot.conversation.deployment import Deployment
from bot.runtime.nlu import ParserLoader
from config.settings import Settings
from storage.db import is_database_down

log = structlog.get_logger(__name__)


WEBHOOK_PATH = "/telegram/webhook"


SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


ALLOWED_UPDATES = ["message", "callback_query"]


SECRET_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,256}$")  # what Telegram accepts as secret_token


_RETRY_STARTUP_S = 30.0


def build_application(settings: Settings, *, polling: bool = False) -> Application:
    """The bot application with our handlers, talking to ``settings.telegram_api_url``.
    Webhook mode has no updater: the app's route hands each update to ``process_update``."""
    api = settings.telegram_api_url.rstrip("/")
    builder = (
        Application.builder()
        .token(settings.telegram_bot_token)
        .base_url(f"{api}/bot")
        .base_file_url(f"{api}/file/bot")
    )
    if not polling:
        builder = builder.updater(None)
    application = builder.build()
    add_handlers(application)
    return application


def add_handlers(application: Application) -> None:
    # Imported here: the handler modules import this one.
    from bot.channels.telegram import groups, retirees, staff

    # Who is staff, looked up for each message before any handler's filter is checked (the
    # filter routes messages only: button presses look up who pressed where they need to).
    is_staff = StaffFilter()
    application.bot_data[STAFF_FILTER_KEY] = is_staff
    application.add_handler(MessageHandler(filters.ALL, is_staff.know_who), group=-1)
    private = filters.ChatType.PRIVATE
    # A command in a group may come as "/linkunit@OurBot": CommandHandler takes that form
    # (and ignores a command addressed to another bot), using the username getMe gave.
    application.add_handlers(
        [
            CallbackQueryHandler(staff.on_claim, pattern=f"^{staff.CLAIM}"),
            CallbackQueryHandler(retirees.on_follow_up, pattern=r"^fu:"),
            CallbackQueryHandler(retirees.on_button),
            CommandHandler("start", staff.on_start, filters=is_staff),
            CommandHandler("start", retirees.on_start, filters=private),
            CommandHandler("mine", staff.on_mine),
            CommandHandler("close", staff.on_close),
            CommandHandler(groups.LINK_COMMAND, groups.on_link_unit),
            CommandHandler(groups.UNLINK_COMMAND, groups.on_unlink_unit),
            MessageHandler(filters.StatusUpdate.MIGRATE, groups.on_chat_migrated),
            # Staff write anything anywhere: their help. Retirees talk in a private chat; the
            # other members of a group are not answered.
            MessageHandler(is_staff, staff.on_message),
            MessageHandler(private & filters.CONTACT, retirees.on_contact),
            MessageHandler(private & filters.TEXT & ~filters.COMMAND, retirees.on_text),
            MessageHandler(private, retirees.on_other),
        ]
    )
    application.add_error_handler(on_error)


async def on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A handler failed. When the database could not be reached, the webhook answers 503 so
    Telegram delivers the update again; any other error (a refused row too) would only fail
    again, so the person is told something went wrong (in a private chat) and the update is not
    retried. Either way the update goes no further (ApplicationHandlerStop): when the look-up of
    who is staff failed (group -1), no handler may take it for a retiree's."""
    try:
        await _on_error(update, context)
    finally:
        if isinstance(update, Update):
            raise ApplicationHandlerStop


async def _on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    error = context.error
    update_id = update.update_id if isinstance(update, Update) else None
    log.error(
        "telegram_update_failed",
        update_id=update_id,
        error=f"{type(error).__name__}: {str(error)[:300]}",
        exc_info=error,
    )
    if not isinstance(update, Update):
        return
    if error is not None and is_database_down(error):
        context.application.bot_data.setdefault(FAILED_UPDATES, {})[update.update_id] = error
        return
    hotline = context.application.bot_data.get(HOTLINE_KEY)
    user = update.effective_user
    if hotline is None or user is None or not is_private(update):
        return
    with contextlib.suppress(TelegramError):
        await context.bot.send_message(user.id, hotline.text("error", language_of(hotline, update)))


class BotStartup:
    """Start the bot without letting Telegram decide whether the hotline starts: when getMe or
    setWebhook fails (Telegram unreachable), the app starts all the same and keeps trying in the
    background; a webhook call arriving meanwhile tries once more before answering 503."""

    def __init__(self, application: Application, settings: Settings) -> None:
        self.application = application
        self.settings = settings
        self.initialized = False
        self.webhook_set = False
        self._lock = asyncio.Lock()
        self._retry: asyncio.Task[None] | None = None

    async def ready(self) -> bool:
        """The application is initialised and started (getMe answered)."""
        if self.initialized and self.application.running:
            return True
        async with self._lock:
            try:
                if not self.initialized:
                    await self.application.initialize()
                    self.initialized = True
                if not self.application.running:
                    await self.application.start()
            except TelegramError as exc:
                log.error("telegram_start_failed", error=str(exc)[:300])
                return False
            return True

    async def set_webhook(self) -> bool:
        public = self.settings.public_url.rstrip("/")
        if not public:
            log.warning("telegram_webhook_not_set", why="no HOTLINE_PUBLIC_URL: set it by hand")
            return True
        try:
            await self.application.bot.set_webhook(
                public + WEBHOOK_PATH,
                secret_token=self.settings.telegram_webhook_secret,
                allowed_updates=ALLOWED_UPDATES,
            )
        except TelegramError as exc:
            log.error("telegram_webhook_failed", error=str(exc)[:300])
            return False
        log.info("telegram_webhook_set", url=public + WEBHOOK_PATH)
        return True

    async def _up(self) -> bool:
        self.webhook_set = self.webhook_set or (await self.ready() and await self.set_webhook())
        return self.webhook_set

    async def start(self) -> None:
        if not await self._up():
            self._retry = asyncio.create_task(self._keep_trying())

    async def _keep_trying(self) -> None:
        while True:
            await asyncio.sleep(_RETRY_STARTUP_S)
            if await self._up():
                return

    async def stop(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
        if self.application.running:
            await self.application.stop()
        if self.initialized:
            await self.application.shutdown()


async def poll(deployment: Deployment, db: Engine, stop: asyncio.Event) -> None:
    """Fetch updates by long polling (no public URL needed) with the same handlers, until
    ``stop`` is set. Starting to poll deletes the webhook first (Telegram allows one or the
    other), so do not also run the app's webhook with the same bot."""
    settings = deployment.settings
    application = build_application(settings, polling=True)
    loader = ParserLoader(settings)
    loader.start()
    talk = Conversations(deployment, db, loader.parser, on_filed=[new_case_announcer(deployment)])
    application.bot_data[HOTLINE_KEY] = Hotline(db, talk)
    updater = application.updater
    assert updater is not None
    async with application:  # initialize() ... shutdown()
        await updater.start_polling(allowed_updates=ALLOWED_UPDATES)
        await application.start()
        log.info("telegram_polling")
        try:
            await stop.wait()
        finally:
            await updater.stop()
            await application.stop()
