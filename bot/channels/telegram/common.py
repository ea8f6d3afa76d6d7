"""What the Telegram handlers share: the hotline's services (``Hotline``), sending a reply now or
through the outbox, buttons, de-duplicating a redelivered update, and who is writing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram import Message as TgMessage
from telegram.error import BadRequest, Forbidden, InvalidToken, TelegramError
from telegram.ext import ContextTypes, filters

from bot.channels.base import Conversations
from bot.conversation.messages import Choice, Reply, Style, render
from config.categories import CategoryConfig
from config.i18n import Catalogs
from config.settings import Settings
from storage import messages, outbox
from storage.models import Direction, MessageStatus, Retiree, Staff

log = structlog.get_logger(__name__)

CHANNEL = "telegram"
CALLBACK_DATA_MAX = 64  # bytes (UTF-8), Telegram's limit
HOTLINE_KEY = "hotline"  # the key of our services in application.bot_data
FAILED_UPDATES = "failed_updates"  # update_id -> the error, for the webhook route to answer 503


@dataclass
class Hotline:
    """What the handlers need: the database and the conversation engine, whose deployment has
    the settings, the texts and the categories."""

    db: Engine
    talk: Conversations

    def __post_init__(self) -> None:
        self.sessions = sessionmaker(self.db, expire_on_commit=False)

    @property
    def settings(self) -> Settings:
        return self.talk.deployment.settings

    @property
    def catalogs(self) -> Catalogs:
        return self.talk.deployment.catalogs

    @property
    def categories(self) -> CategoryConfig:
        return self.talk.deployment.categories

    def text(self, key: str, lang: str, **params: Any) -> str:
        return self.catalogs.text(f"telegram.{key}", lang, **params)

    def desk(self, key: str, lang: str, **params: Any) -> str:
        """A text every channel's staff get (bot/channels/staff_desk.py)."""
        return self.catalogs.text(f"staff_desk.{key}", lang, **params)

    async def staff_for(self, user_id: int) -> Staff | None:
        return await self.talk.run(self._staff_for, user_id)

    def _staff_for(self, user_id: int) -> Staff | None:
        with self.sessions.begin() as session:
            return staff_by_telegram(session, user_id)


def staff_by_telegram(session: Session, user_id: int) -> Staff | None:
    return session.scalars(select(Staff).where(Staff.telegram_user_id == user_id)).first()


def hotline_of(context: ContextTypes.DEFAULT_TYPE) -> Hotline:
    return context.application.bot_data[HOTLINE_KEY]


# -- the application ---------------------------------------------------------------------------


# -- webhook mode inside the app ---------------------------------------------------------------


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
    added = messages.record_once(
        session,
        channel=CHANNEL,
        direction=Direction.INBOUND,
        address=str(user.id) if user is not None else "",
        provider_id=provider_id(update),
        text=text,
        payload={"kind": kind},
        status=MessageStatus.RECEIVED,
        retiree_id=retiree_id,
        now=datetime.now(UTC),
    )
    return added is not None


def provider_id(update: Update) -> str:
    return f"tg:{update.update_id}"


# -- who is writing -----------------------------------------------------------------------------


def language_of(hotline: Hotline, update: Update, retiree: Retiree | None = None) -> str:
    if retiree is not None:
        return retiree.preferred_language
    user = update.effective_user
    code = (user.language_code or "") if user is not None else ""
    return "en" if code.lower().startswith("en") else hotline.settings.default_language


class StaffFilter(filters.UpdateFilter):
    """Messages from a volunteer or staff member (a ptb filter). Who is staff is looked up in the
    database for each message by `know_who`, the one handler of group -1, which runs before the
    handlers' filters are checked; the Staff found is kept for the handler (`staff_of`)."""

    def __init__(self) -> None:
        super().__init__(name="hotline.STAFF")
        self.found: dict[int, Staff] = {}

    def filter(self, update: Update) -> bool:
        user = update.effective_user
        return user is not None and user.id in self.found

    def staff_of(self, update: Update) -> Staff | None:
        user = update.effective_user
        return self.found.get(user.id) if user is not None else None

    async def know_who(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        user = update.effective_user
        if user is None:
            return
        staff = await hotline_of(context).staff_for(user.id)
        if staff is None:
            self.found.pop(user.id, None)
        else:
            self.found[user.id] = staff


STAFF_FILTER_KEY = "staff_filter"  # the application's StaffFilter, in bot_data


def staff_of(context: ContextTypes.DEFAULT_TYPE, update: Update) -> Staff | None:
    """The volunteer or staff member who sent ``update`` (a handler behind the staff filter)."""
    found: StaffFilter = context.application.bot_data[STAFF_FILTER_KEY]
    return found.staff_of(update)


def is_private(update: Update) -> bool:
    """Retirees talk to the bot in a private chat; in a group it answers staff commands only."""
    chat = update.effective_chat
    return chat is not None and chat.type == "private"


# -- polling mode (`hotline telegram poll`) ----------------------------------------------------
