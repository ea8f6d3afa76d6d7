"""The one inbound-message type every channel produces and the one reply type the engine gives.

Channels translate their wire format to `Inbound` and render `Reply` back; rich replies degrade
gracefully: choices are buttons on Telegram, "press 1 / press 2" on the phone and a numbered
list in an SMS.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from config.i18n import Catalogs
from storage import messages
from storage.models import Direction, MessageStatus


class Hint(enum.StrEnum):
    HAND_OVER = "hand_over"  # put a person on now (the phone channel dials staff)
    URGENT = "urgent"  # an emergency: no menus, send at once
    END = "end"  # the conversation is over (hang up, close the session)


class Style(enum.StrEnum):
    """How a channel shows choices."""

    BUTTONS = "buttons"  # Telegram, the web: the channel draws the choices itself
    VOICE = "voice"  # the phone: spoken, with keypad digits
    TEXT = "text"  # SMS, WhatsApp: a numbered list


@dataclass(frozen=True)
class Choice:
    value: str  # what comes back when chosen (a button's data, or the intent it stands for)
    label: str  # what the person sees or hears


@dataclass(frozen=True)
class Inbound:
    """One message from a person, on any channel."""

    channel: str  # "phone", "sms", "whatsapp", "telegram", "web", "cli"
    address: str  # the sender on that channel: a phone number (E.164), a Telegram user id, ...
    provider_id: str | None  # the provider's message id, for recognising a redelivery
    received_at: datetime
    text: str = ""
    digits: str = ""  # keypad input on the phone
    choice: str | None = None  # the value of a chosen button
    metadata: dict[str, Any] = field(default_factory=dict)  # e.g. {"speech_confidence": 0.42}

    @property
    def is_empty(self) -> bool:
        return not (self.text.strip() or self.digits or self.choice)


def record_inbound(
    session: Session,
    inbound: Inbound,
    *,
    payload: dict[str, Any],
    status: MessageStatus,
    retiree_id: int | None = None,
    case_id: int | None = None,
) -> int | None:
    """Record ``inbound`` that no engine turn records (storage.messages.record_once): its row
    id, or None when it was recorded before (a redelivery). It must carry a provider id."""
    assert inbound.provider_id is not None
    return messages.record_once(
        session,
        channel=inbound.channel,
        direction=Direction.INBOUND,
        address=inbound.address,
        provider_id=inbound.provider_id,
        text=inbound.text,
        payload=payload,
        status=status,
        retiree_id=retiree_id,
        case_id=case_id,
        now=inbound.received_at,
    )


@dataclass(frozen=True)
class Reply:
    """What the engine says back: text, optional choices, and hints for the channel."""

    text: str
    choices: tuple[Choice, ...] = ()
    hints: frozenset[Hint] = frozenset()
    language: str = "zh"

    def choice_for_digit(self, digits: str) -> Choice | None:
        """The choice a keypad digit or a typed number picks (1 is the first), if any."""
        if digits.isdecimal() and 1 <= int(digits) <= len(self.choices):
            return self.choices[int(digits) - 1]
        return None


_CASE_NUMBER = re.compile(r"(?<!\d)(\d{4})-(\d{6})(?!\d)")  # \b fails next to Chinese
_SPOKEN_SEPARATOR = {"zh": "杠", "en": "dash"}


# A phone number: seven or more digits, perhaps after +86 (which a caller does not say).
_PHONE_NUMBER = re.compile(r"(?<![\d-])(?:\+86)?(\+?\d{7,15})(?![\d-])")


def speak_digits(text: str, language: str) -> str:
    """Case and phone numbers read digit by digit, as a voice reply should say them:
    2026-000123 → "2 0 2 6 杠 0 0 0 1 2 3"; +8613912345678 → "1 3 9 1 2 3 4 5 6 7 8"."""
    separator = _SPOKEN_SEPARATOR.get(language, _SPOKEN_SEPARATOR["zh"])

    def spoken(match: re.Match[str]) -> str:
        return f"{' '.join(match.group(1))} {separator} {' '.join(match.group(2))}"

    def phone(match: re.Match[str]) -> str:
        return " ".join(match.group(1).lstrip("+"))

    return _PHONE_NUMBER.sub(phone, _CASE_NUMBER.sub(spoken, text))


def render(reply: Reply, style: Style, catalogs: Catalogs) -> str:
    """The reply's text as one string for ``style``; BUTTONS leaves the choices to the channel."""
    lang = reply.language
    if style == Style.BUTTONS or not reply.choices:
        return speak_digits(reply.text, lang) if style == Style.VOICE else reply.text
    if style == Style.VOICE:
        options = [
            catalogs.text("choices.press", lang, label=c.label, digit=n)
            for n, c in enumerate(reply.choices, 1)
        ]
        separator = "，" if lang == "zh" else ". "
        end = "。" if lang == "zh" else "."
        return f"{speak_digits(reply.text, lang)} {separator.join(options)}{end}"
    lines = [
        catalogs.text("choices.numbered", lang, label=c.label, digit=n)
        for n, c in enumerate(reply.choices, 1)
    ]
    return "\n".join([reply.text, *lines, catalogs.text("choices.reply_with_number", lang)])
