"""Sends the outbox's Telegram messages through python-telegram-bot's ``Bot`` (the payload's
"choices" become an inline keyboard; an ``edit_post`` item edits a post already sent), and keeps
the posts of cases up with them (``upkeep``). A sender never raises for what Telegram says: it
returns a ``SendOutcome`` (retry after a flood limit's delay, failed for good when the person
blocked the bot)."""

from __future__ import annotations

import warnings
from datetime import timedelta
from typing import Any

import structlog
import telegram
from sqlalchemy.orm import Session
from telegram import InlineKeyboardMarkup
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)
from telegram.request import HTTPXRequest

from bot.channels.base import SendOutcome
from bot.channels.telegram.common import CALLBACK_DATA_MAX, inline_keyboard
from bot.channels.telegram.staff import EDIT_POST, keep_posts_up, record_sent
from config.i18n import Catalogs
from config.settings import Settings
from storage.models import OutboxItem
from storage.site import site_of

log = structlog.get_logger(__name__)

TELEGRAM_TIMEOUT_S = 10.0


def telegram_bot(settings: Settings, *, timeout_s: float = TELEGRAM_TIMEOUT_S) -> Any:
    """A python-telegram-bot ``Bot`` for our token and Bot API base (``telegram_api_url``).
    Its connection pool lets several sends run at once (the library's default is one)."""
    api = settings.telegram_api_url.rstrip("/")
    request = HTTPXRequest(
        connection_pool_size=16,
        read_timeout=timeout_s,
        write_timeout=timeout_s,
        connect_timeout=timeout_s,
        pool_timeout=timeout_s,
    )
    return telegram.Bot(
        settings.telegram_bot_token,
        base_url=f"{api}/bot",
        base_file_url=f"{api}/file/bot",
        request=request,
    )


def keyboard_of(choices: Any) -> InlineKeyboardMarkup | None:
    """The inline keyboard of an outbox payload's ``[[value, label], ...]`` (common.py's big
    buttons). A value longer than Telegram's 64 bytes of callback_data cannot be a button: it is
    left out (and logged) rather than cut, which would make it mean something else."""
    pairs = []
    for choice in choices or []:
        value, label = str(choice[0]), str(choice[1])
        if not 1 <= len(value.encode()) <= CALLBACK_DATA_MAX:
            log.warning("telegram_choice_too_long", bytes=len(value.encode()), label=label[:40])
            continue
        pairs.append((value, label))
    return inline_keyboard(pairs) if pairs else None


def _seconds(value: Any) -> float:
    if isinstance(value, timedelta):
        return value.total_seconds()
    return float(value)


class TelegramSender:
    """Telegram messages through the Bot API (see the module docstring)."""

    channels = ("telegram",)

    def __init__(self, settings: Settings, *, bot: Any = None) -> None:
        self.settings = settings
        self._bot = bot

    @property
    def bot(self) -> Any:
        if self._bot is None:
            self._bot = telegram_bot(self.settings)
        return self._bot

    def after_sent(self, session: Session, item: OutboxItem, outcome: SendOutcome) -> None:
        """In the transaction that marks ``item`` sent: where a new-case post went, so that once
        somebody claims the case the others' copies say who took it."""
        if not outcome.provider_id:
            return
        record_sent(session, item, outcome.provider_id)

    async def send(
        self, channel: str, address: str, payload: dict[str, Any], idempotency_key: str
    ) -> SendOutcome:
        if channel != "telegram":
            return SendOutcome.failed(f"telegram cannot send on channel {channel!r}")
        text = str(payload.get("text") or "")
        if not text.strip():
            return SendOutcome.failed("nothing to say: the payload has no text")
        try:
            chat_id: int | str = int(address)
        except ValueError:
            chat_id = address  # "@channelname"
        markup = keyboard_of(payload.get("choices"))
        edit = payload.get("kind") == EDIT_POST
        try:
            if edit:  # a post's new text, without its buttons (staff.keep_posts_up)
                message = await self.bot.edit_message_text(
                    text=text, chat_id=chat_id, message_id=int(payload["message_id"])
                )
            else:
                message = await self.bot.send_message(
                    chat_id=chat_id, text=text, reply_markup=markup
                )
        except RetryAfter as exc:
            delay = getattr(exc, "_retry_after", None)
            if delay is None:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    delay = exc.retry_after
            return SendOutcome.retry(f"telegram: {exc.message}", _seconds(delay))
        except Forbidden as exc:  # blocked by the user, deactivated, kicked from the group
            return SendOutcome.failed(f"telegram forbidden: {exc.message}")
        except ChatMigrated as exc:
            return SendOutcome.failed(f"telegram: the group moved to chat {exc.new_chat_id}")
        except InvalidToken as exc:  # a configuration mistake: retry once it is fixed
            return SendOutcome.retry(f"telegram: invalid bot token: {exc.message}")
        except BadRequest as exc:  # chat not found, text refused: the same request fails again
            if edit and "not modified" in exc.message:  # edited already (a tap on it, say)
                return SendOutcome.ok(None)
            return SendOutcome.failed(f"telegram bad request: {exc.message}")
        except TimedOut as exc:
            return SendOutcome.retry(f"telegram: timed out: {exc.message}")
        except NetworkError as exc:  # connection failures, 5xx
            return SendOutcome.retry(f"telegram: network error: {exc.message}")
        except TelegramError as exc:
            return SendOutcome.retry(f"telegram: {exc.message}")
        if edit or not hasattr(message, "message_id"):  # an edit may answer True
            return SendOutcome.ok(None)
        return SendOutcome.ok(f"{message.chat_id}:{message.message_id}")

    def upkeep(self, session: Session, *, catalogs: Catalogs, language: str | None) -> int:
        """In the worker's upkeep (every few seconds): the posts of cases taken elsewhere, or
        released, are kept up with them (texts in the deployment's language, like the posts)."""
        return keep_posts_up(
            session,
            catalogs=catalogs,
            categories=site_of(session).categories,
            language=self.settings.default_language,
            timezone=self.settings.timezone,
        )

    async def aclose(self) -> None:
        if self._bot is not None:
            await self._bot.shutdown()
