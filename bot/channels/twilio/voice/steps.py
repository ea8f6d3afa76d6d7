"""Where a call stands: the step carried in the action URLs Twilio calls back, the numbers a call
is put through to, and the engine's inbound messages made from Twilio's webhooks."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import Request

from bot.conversation.dialogue import HANDOVER_UNANSWERED
from bot.conversation.messages import Inbound
from config.i18n import DEFAULT_LANGUAGE
from storage.phones import InvalidPhoneNumber, normalize_phone

CHANNEL = "phone"
PREFIX = "/twilio/voice"
# A call that is over (Twilio's CallStatus); "canceled": hung up before it was answered.
FINAL_STATUSES = frozenset({"completed", "busy", "no-answer", "failed", "canceled"})
# A <Dial> that reached somebody (DialCallStatus).
ANSWERED = frozenset({"completed", "answered"})
EMERGENCY, HAND_OVER = "emergency", "handover"
# An emergency's alert call (storage/alert_chain.py): its Gather's action and status callback,
# each with the outbox item's idempotency key (``k``).
ALERT_PATH = f"{PREFIX}/alert"
STATUS_PATH = f"{PREFIX}/status"


def alert_url(public_url: str, key: str) -> str:
    return f"{public_url.rstrip('/')}{ALERT_PATH}?{urlencode({'k': key})}"


def status_url(public_url: str, key: str) -> str:
    return f"{public_url.rstrip('/')}{STATUS_PATH}?{urlencode({'k': key})}"


@dataclass(frozen=True)
class Step:
    """The call's place, read from and written to the query string of Twilio's callbacks."""

    n: int = 1  # the number of the next turn (a turn's provider id is "{CallSid}:{n}")
    lang: str = DEFAULT_LANGUAGE
    emergency_called: bool = False  # the emergency chain of calls ran in this call
    extra: dict[str, str] = field(default_factory=dict)  # route-specific (kind, i, h, said, ...)

    @classmethod
    def read(cls, request: Request) -> Step:
        return cls.of(request.query_params)

    @classmethod
    def of(cls, query: Mapping[str, str]) -> Step:
        """The step a query string (as a mapping) names."""
        n = query.get("n", "1")
        lang = query.get("lang", DEFAULT_LANGUAGE)
        extra = {k: v for k, v in query.items() if k not in ("n", "lang", "e")}
        return cls(
            n=int(n) if n.isdigit() else 1,
            lang=lang if lang in ("zh", "en") else DEFAULT_LANGUAGE,
            emergency_called=query.get("e") == "1",
            extra=extra,
        )

    def url(self, route: str, **extra: object) -> str:
        """A relative URL: Twilio resolves it against the public URL it called, and signs that."""
        params: dict[str, object] = {"n": self.n, "lang": self.lang}
        if self.emergency_called:
            params["e"] = 1
        params.update({k: v for k, v in extra.items() if v is not None})
        return f"{PREFIX}/{route}?{urlencode(params)}"

    def but(self, **changes: Any) -> Step:
        values = {"n": self.n, "lang": self.lang, "emergency_called": self.emergency_called}
        values.update(changes)
        return Step(**values)

    def number(self, name: str, default: int = 0) -> int:
        value = self.extra.get(name, "")
        return int(value) if value.isdigit() else default


@dataclass(frozen=True)
class Caller:
    """Who is on a call, as the call screening names them to whoever picks up."""

    name: str
    community: str  # "" when the registry has none


def caller_address(form: dict[str, Any]) -> str:
    """The conversation's address: the caller's number; a withheld number ("anonymous",
    "+266696687") gets one of its own per call, so two such callers never share a conversation."""
    number = str(form.get("From", ""))
    try:
        normalize_phone(number)
    except InvalidPhoneNumber:
        return f"withheld:{form.get('CallSid', '')}"
    return number


def to_float(value: object) -> float | None:
    try:
        return float(str(value))
    except ValueError:
        return None


def turn_inbound(
    form: dict[str, Any],
    step: Step,
    *,
    text: str = "",
    digits: str = "",
    metadata: dict[str, Any] | None = None,
) -> Inbound:
    """What the caller said or pressed at ``step``, as the engine's turn ``{CallSid}:{n}``."""
    return Inbound(
        channel=CHANNEL,
        address=caller_address(form),
        provider_id=f"{form.get('CallSid', '')}:{step.n}",
        received_at=datetime.now(UTC),
        text=text,
        digits=digits,
        metadata=metadata or {},
    )


def hand_over_unanswered(form: dict[str, Any], asked_in: int, recording_url: str | None) -> Inbound:
    """The engine's event for a hand-over nobody took; one per hand-over (the voicemail's
    callback and the call's end both send it: the second is answered as a repeat)."""
    metadata: dict[str, Any] = {"event": HANDOVER_UNANSWERED}
    if recording_url:
        metadata["recording_url"] = recording_url
    return Inbound(
        channel=CHANNEL,
        address=caller_address(form),
        provider_id=f"{form.get('CallSid', '')}:handover:{asked_in}",
        received_at=datetime.now(UTC),
        metadata=metadata,
    )
