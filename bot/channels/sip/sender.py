"""The outbox's calls over the SIP line: `hotline sip` runs an outbox worker (bot/runtime/worker.py)
of the "voice" channel alone, whose sender hands each call to the agent (agent.py) and waits
until it is dialled. What the call then says and what its keys do is callout.py's; the alert
chain hears how it ended from the line (line.py), as it hears Twilio's status callbacks.

A call waits for a free line of this process (``PLACE_WAIT_S``; two lines are kept for a caller
and their put-through) and, if none comes free, goes back to the outbox to be tried again soon.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Future
from typing import Any, Protocol

from sqlalchemy.orm import Session

from bot.channels.base import SendOutcome
from bot.channels.calls import CHANNEL
from bot.channels.sip.callout import Placed
from storage import alert_chain
from storage.models import OutboxItem
from storage.phones import InvalidPhoneNumber, normalize_phone

PLACE_WAIT_S = 10.0  # how long a call waits for a free line before it goes back to the outbox
BUSY_RETRY_S = 5.0  # and when it is tried again


class LineBusy(Exception):
    """No line of this process came free in time."""


class DialFailed(Exception):
    """The SIP stack would not dial (a malformed number, the transport down): says why."""


class Dialler(Protocol):
    def place(self, placed: Placed, wait_s: float) -> Future[str]:
        """The call's id once dialled (or LineBusy, DialFailed)."""
        ...


class SipCallSender:
    channels = (CHANNEL,)

    def __init__(self, dialler: Dialler, language: str) -> None:
        self.dialler = dialler
        self.language = language

    async def send(
        self, channel: str, address: str, payload: dict[str, Any], idempotency_key: str
    ) -> SendOutcome:
        try:
            number = normalize_phone(address)
        except InvalidPhoneNumber:
            number = ""
        if number != address:  # the outbox holds E.164 numbers; dial_uri rings those
            return SendOutcome.failed(f"not a phone number the line can ring: {address!r}")
        placed = Placed.of(idempotency_key, address, payload, self.language)
        if not placed.text.strip():
            return SendOutcome.failed("the call has nothing to say")
        try:
            call_id = await asyncio.wrap_future(self.dialler.place(placed, PLACE_WAIT_S))
        except LineBusy:
            return SendOutcome.retry("every line of `hotline sip` is in use", BUSY_RETRY_S)
        except DialFailed as exc:
            return SendOutcome.retry(f"the line could not dial: {exc}")
        return SendOutcome.ok(str(call_id))

    def after_sent(self, session: Session, item: OutboxItem, outcome: SendOutcome) -> None:
        """The call's id on an emergency's alert call (as Twilio's CallSid)."""
        if outcome.provider_id:
            alert_chain.record_placed(item, outcome.provider_id)
