"""Telegram (python-telegram-bot 22): the bot application, its webhook inside the app, polling,
and what its handlers share (sending, de-duplication). The handlers: retirees in
telegram_retirees.py, volunteers and staff in telegram_staff.py, a unit's group chat (linking
it) in telegram_groups.py; the cases posted to volunteers and staff in telegram_posts.py.

Webhook mode: `POST /telegram/webhook`, the secret header compared in constant time, each update
handed to the application's handlers. `hotline telegram poll` runs the same handlers by long
polling, for a machine without a public URL. A redelivered update (same update_id) changes
nothing twice: a retiree's turn carries provider_id "tg:<update_id>" (the engine answers a repeat
from what it saved), anything else records that id in the messages table in the transaction of
what it does. Replies are sent at once; one Telegram did not take for a passing reason (flood
limit, network) goes to the outbox for the worker to retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from fastapi import FastAPI, HTTPException, Request, Response
from sqlalchemy import Engine, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram import Message as TgMessage
from telegram.error import BadRequest, Forbidden, InvalidToken, TelegramError
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from bot.channels.base import Conversations, Mounted
from bot.conversation.messages import Choice, Reply, Style, render
from bot.runtime.nlu import ParserLoader
from config.categories import CategoryConfig, load_categories
from config.i18n import Catalogs, load_catalogs
from config.settings import Settings
from storage import outbox
from storage.db import dialect_insert
from storage.models import Case, Direction, Message, Retiree, Staff

log = structlog.get_logger(__name__)

CHANNEL = "telegram"
WEBHOOK_PATH = "/telegram/webhook"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
ALLOWED_UPDATES = ["message", "callback_query"]
CALLBACK_DATA_MAX = 64  # bytes (UTF-8), Telegram's limit
_SECRET = re.compile(r"^[A-Za-z0-9_-]{1,256}$")  # what Telegram accepts as secret_token
_HOTLINE = "hotline"  # the key of our services in application.bot_data
_FAILED = "failed_updates"  # update_id -> the error, for the webhook route to answer 503
_RETRY_STARTUP_S = 30.0


@dataclass
class Hotline:
    """What the handlers need: the settings, the database, the conversation engine, the texts."""

    settings: Settings
    db: Engine
    talk: Conversations
    catalogs: Catalogs
    categories: CategoryConfig

    def __post_init__(self) -> None:
        self.sessions = sessionmaker(self.db, expire_on_commit=False)

    def text(self, key: str, lang: str, **params: Any) -> str:
        return self.catalogs.text(f"telegram.{key}", lang, **params)

    async def staff_for(self, user_id: int) -> Staff | None:
        return await self.talk.run(self._staff_for, user_id)

    def _staff_for(self, user_id: int) -> Staff | None:
        with self.sessions.begin() as session:
            return staff_by_telegram(session, user_id)


def make_hotline(settings: Settings, db: Engine, talk: Conversations) -> Hotline:
    folder = settings.config_dir
    return Hotline(
        settings=settings,
        db=db,
        talk=talk,
        catalogs=load_catalogs(folder / "messages"),
        categories=load_categories(folder / "categories.yml"),
    )


def staff_by_telegram(session: Session, user_id: int) -> Staff | None:
    return session.scalars(select(Staff).where(Staff.telegram_user_id == user_id)).first()


def hotline_of(context: ContextTypes.DEFAULT_TYPE) -> Hotline:
    return context.application.bot_data[_HOTLINE]


# -- the application ---------------------------------------------------------------------------


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

    # A command in a group may come as "/linkunit@OurBot": CommandHandler takes that form
    # (and ignores a command addressed to another bot), using the username getMe gave.
    application.add_handlers(
        [
            CallbackQueryHandler(staff.on_claim, pattern=f"^{staff.CLAIM}"),
            CallbackQueryHandler(retirees.on_follow_up, pattern=r"^fu:"),
            CallbackQueryHandler(retirees.on_button),
            CommandHandler("start", retirees.on_start),
            CommandHandler("mine", staff.on_mine),
            CommandHandler("close", staff.on_close),
            CommandHandler(groups.LINK_COMMAND, groups.on_link_unit),
            CommandHandler(groups.UNLINK_COMMAND, groups.on_unlink_unit),
            MessageHandler(filters.StatusUpdate.MIGRATE, groups.on_chat_migrated),
            MessageHandler(filters.CONTACT, retirees.on_contact),
            MessageHandler(filters.TEXT & ~filters.COMMAND, retirees.on_text),
            MessageHandler(filters.ALL, retirees.on_other),
        ]
    )
    application.add_error_handler(on_error)


async def on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A handler failed. When the database was the cause, the webhook answers 503 so Telegram
    delivers the update again; any other error would only fail again, so the person is told
    something went wrong (in a private chat) and the update is not retried."""
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
    if isinstance(error, DBAPIError):
        context.application.bot_data.setdefault(_FAILED, {})[update.update_id] = error
        return
    hotline = context.application.bot_data.get(_HOTLINE)
    user = update.effective_user
    if hotline is None or user is None or not is_private(update):
        return
    with contextlib.suppress(TelegramError):
        await context.bot.send_message(user.id, hotline.text("error", language_of(hotline, update)))


# -- webhook mode inside the app ---------------------------------------------------------------


def mount(app: FastAPI, settings: Settings) -> Mounted:
    if not settings.telegram_enabled:
        return Mounted(CHANNEL, enabled=False, why="no HOTLINE_TELEGRAM_BOT_TOKEN")
    # New cases are posted to volunteers and staff whenever there is a bot (webhook or polling).
    announce = [new_case_announcer(settings)]
    secret = settings.telegram_webhook_secret
    if not secret:
        return Mounted(
            CHANNEL,
            enabled=False,
            why="no HOTLINE_TELEGRAM_WEBHOOK_SECRET (or run `hotline telegram poll`)",
            on_filed=announce,
        )
    if not _SECRET.match(secret):
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
            data = await request.json()
            update = Update.de_json(data, application.bot)
        except (ValueError, TypeError, KeyError, AttributeError):
            raise HTTPException(400, detail="not a Telegram update") from None
        if not await bring_up.ready():
            raise HTTPException(503, detail="the Telegram bot is not ready; deliver again")
        await application.process_update(update)
        if application.bot_data.get(_FAILED, {}).pop(update.update_id, None) is not None:
            raise HTTPException(503, detail="the database failed; deliver again")
        return Response(status_code=200)

    async def startup() -> None:
        application.bot_data[_HOTLINE] = make_hotline(
            settings, app.state.engine, app.state.conversations
        )
        await bring_up.start()

    return Mounted(
        CHANNEL,
        enabled=True,
        on_startup=[startup],
        on_shutdown=[bring_up.stop],
        on_filed=announce,
    )


def new_case_announcer(
    settings: Settings, *, moved: bool = False
) -> Callable[[Session, Sequence[Case]], int]:
    """The engine's hook: each new case posted (through the outbox) to those who may take it.
    With ``moved``, the hook of escalation and transfers: each case that came to another
    unit's queue posted to those who may take it now."""
    catalogs = load_catalogs(settings.config_dir / "messages")
    categories = load_categories(settings.config_dir / "categories.yml")

    def announce(session: Session, cases: Sequence[Case]) -> int:
        from bot.channels.telegram.posts import announce_new_cases  # it imports this module

        return announce_new_cases(
            session,
            cases,
            settings=settings,
            catalogs=catalogs,
            categories=categories,
            moved=moved,
        )

    return announce


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


# -- sending -----------------------------------------------------------------------------------


def buttons(choices: tuple[Choice, ...]) -> list[tuple[str, str]]:
    """(callback_data, label) per choice. A value longer than Telegram's 64 bytes is sent as
    "#<n>" (its position), which comes back as the typed digit the engine also understands."""
    return [
        (c.value if 0 < len(c.value.encode()) <= CALLBACK_DATA_MAX else f"#{n}", c.label)
        for n, c in enumerate(choices, 1)
    ]


def inline_keyboard(pairs: list[tuple[str, str]]) -> InlineKeyboardMarkup:
    """Large buttons: one per row, so each is as wide as the chat."""
    return InlineKeyboardMarkup(
        [[InlineKeyboardButton(label, callback_data=data)] for data, label in pairs]
    )


async def deliver(
    hotline: Hotline,
    bot: Bot,
    chat_id: int,
    text: str,
    *,
    language: str,
    key: str,
    choices: list[tuple[str, str]] | None = None,
    markup: Any = None,
) -> TgMessage | None:
    """Send now; if Telegram did not take it for a passing reason (flood limit, network, its
    own error), queue it in the outbox (text and inline choices) under ``key``. A refusal that
    would repeat (the person blocked the bot, a bad request) is logged and dropped."""
    if markup is None and choices:
        markup = inline_keyboard(choices)
    try:
        return await bot.send_message(chat_id, text, reply_markup=markup)
    except (Forbidden, BadRequest, InvalidToken) as exc:
        log.warning("telegram_send_refused", chat=chat_id, error=str(exc)[:300])
        return None
    except TelegramError as exc:
        log.warning("telegram_send_queued", chat=chat_id, error=str(exc)[:300])
    payload: dict[str, Any] = {"kind": "reply", "text": text, "language": language}
    if choices:
        payload["choices"] = [[data, label] for data, label in choices]
    await hotline.talk.run(enqueue_reply, hotline, chat_id, payload, key)
    return None


def enqueue_reply(hotline: Hotline, chat_id: int, payload: dict[str, Any], key: str) -> None:
    with hotline.sessions.begin() as session:
        outbox.enqueue(
            session,
            channel=CHANNEL,
            address=str(chat_id),
            payload=payload,
            idempotency_key=key,
            priority=2,
        )


async def send_replies(
    hotline: Hotline, bot: Bot, chat_id: int, replies: list[Reply], key: str
) -> None:
    for n, reply in enumerate(replies):
        await deliver(
            hotline,
            bot,
            chat_id,
            render(reply, Style.BUTTONS, hotline.catalogs),
            language=reply.language,
            key=f"{key}:reply:{n}",
            choices=buttons(reply.choices),
        )


async def answer_quietly(
    update: Update, text: str | None = None, alert: bool = False, url: str | None = None
) -> None:
    """Every callback query is answered (the button stops spinning); a query answered before or
    too old is not worth an error. ``url``: a t.me/<bot>?start=... link the person's app opens."""
    query = update.callback_query
    if query is None:
        return
    try:
        await query.answer(text=text, show_alert=alert, url=url)
    except TelegramError as exc:
        log.info("telegram_answer_failed", error=str(exc)[:200])


async def edit_quietly(update: Update, text: str) -> None:
    """Replace the text of the message whose button was pressed, without its buttons."""
    query = update.callback_query
    if query is None or not isinstance(query.message, TgMessage):
        return
    try:
        await query.message.edit_text(text, reply_markup=None)
    except TelegramError as exc:
        log.info("telegram_edit_failed", error=str(exc)[:200])


# -- de-duplication of updates that are not engine turns ---------------------------------------


def first_delivery(
    session: Session,
    update: Update,
    kind: str,
    *,
    text: str = "",
    retiree_id: int | None = None,
) -> bool:
    """Record an update that is not an engine turn (a command, a contact, a Claim press) as an
    inbound message with provider_id "tg:<update_id>", in the caller's transaction: False when
    it was recorded before (Telegram delivered it again). The engine records its turns under the
    same ids, and one update is either a turn or not, so the two never meet."""
    user = update.effective_user
    result = session.execute(
        dialect_insert(session)(Message.__table__)
        .values(
            channel=CHANNEL,
            direction=Direction.INBOUND.value,
            address=str(user.id) if user is not None else "",
            provider_id=provider_id(update),
            text=text,
            payload={"kind": kind},
            status="received",
            retiree_id=retiree_id,
            created_at=datetime.now(UTC),
        )
        .on_conflict_do_nothing(index_elements=["channel", "provider_id"])
        # RETURNING, not rowcount: psycopg reports -1 for an INSERT ... ON CONFLICT.
        .returning(Message.__table__.c.id)
    )
    return result.first() is not None


def provider_id(update: Update) -> str:
    return f"tg:{update.update_id}"


# -- who is writing -----------------------------------------------------------------------------


def language_of(hotline: Hotline, update: Update, retiree: Retiree | None = None) -> str:
    if retiree is not None:
        return retiree.preferred_language
    user = update.effective_user
    code = (user.language_code or "") if user is not None else ""
    return "en" if code.lower().startswith("en") else hotline.settings.default_language


def is_private(update: Update) -> bool:
    """Retirees talk to the bot in a private chat; in a group it answers staff commands only."""
    chat = update.effective_chat
    return chat is not None and chat.type == "private"


# -- polling mode (`hotline telegram poll`) ----------------------------------------------------


async def poll(settings: Settings, db: Engine, stop: asyncio.Event) -> None:
    """Fetch updates by long polling (no public URL needed) with the same handlers, until
    ``stop`` is set. Starting to poll deletes the webhook first (Telegram allows one or the
    other), so do not also run the app's webhook with the same bot."""
    application = build_application(settings, polling=True)
    loader = ParserLoader(settings)
    loader.start()
    application.bot_data[_HOTLINE] = make_hotline(
        settings, db, Conversations(settings, db, loader.parser)
    )
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
