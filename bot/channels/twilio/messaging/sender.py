"""Sends SMS and WhatsApp messages of the outbox through Twilio's Messages API (``whatsapp:+...``
addresses for WhatsApp); their delivery reports come back to the status route when the public
URL is known. An item whose earlier attempt was lost (its worker died) is looked for among the
messages Twilio has before it is sent again (`MessagingSender.find_sent`)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import aiohttp
import structlog
from sqlalchemy.orm import Session
from twilio.base.exceptions import TwilioException

from bot.channels.base import SendOutcome
from bot.channels.twilio.messaging.delivery import WHATSAPP_PREFIX, record_sent
from bot.channels.twilio.rest import TwilioRestSender
from storage.models import OutboxItem

log = structlog.get_logger(__name__)

STATUS_PATH = "/twilio/messaging/status"
# How many of the newest messages to a number are looked through for a lost attempt's, and how
# far the provider's clock may be behind ours.
LOOK_THROUGH = 20
CLOCK_SLACK = timedelta(seconds=30)


def _whatsapp(address: str) -> str:
    return address if address.startswith(WHATSAPP_PREFIX) else f"{WHATSAPP_PREFIX}{address}"


class MessagingSender(TwilioRestSender):
    """SMS and WhatsApp messages through Twilio."""

    channels = ("sms", "whatsapp")

    async def _send_text(
        self, channel: str, address: str, text: str, payload: dict[str, Any], key: str
    ) -> SendOutcome:
        numbers = self._numbers(channel, address)
        if numbers is None:
            return SendOutcome.retry("no WhatsApp sender configured (HOTLINE_TWILIO_WHATSAPP_FROM)")
        to, from_ = numbers
        options = dict(to=to, from_=from_, body=text, **self._status_callback())
        return await self._create(lambda client: client.messages.create_async(**options), key)

    async def find_sent(
        self, channel: str, address: str, payload: dict[str, Any], since: datetime
    ) -> SendOutcome | None:
        """The message Twilio took for this item in an attempt whose outcome was lost: one of
        the newest sent from our number to ``address`` since ``since`` with the item's text.
        None when there is none, or when Twilio cannot be asked now (then the item is sent:
        a duplicate is better than a reply lost)."""
        text = str(payload.get("text") or "")
        numbers = self._numbers(channel, address)
        if numbers is None or self._unsendable(channel, text) is not None:
            return None
        to, from_ = numbers
        try:
            found = await self._twilio().messages.list_async(to=to, from_=from_, limit=LOOK_THROUGH)
        except (TwilioException, aiohttp.ClientError, OSError, TimeoutError) as exc:
            log.warning("twilio_lookup_failed", error=f"{type(exc).__name__}: {exc}"[:200])
            return None
        for message in found:
            created = message.date_created
            if message.body == text and created is not None and created >= since - CLOCK_SLACK:
                return SendOutcome.ok(message.sid)
        return None

    def _numbers(self, channel: str, address: str) -> tuple[str, str] | None:
        """(to, from) for ``channel``; None when WhatsApp has no sender number."""
        if channel != "whatsapp":
            return address, self.settings.twilio_from_number
        if not self.settings.twilio_whatsapp_from:
            return None
        return _whatsapp(address), _whatsapp(self.settings.twilio_whatsapp_from)

    def _status_callback(self) -> dict[str, str]:
        """Delivery reports of messages go to the messaging channel's status route."""
        base = self.settings.public_url.rstrip("/")
        return {"status_callback": f"{base}{STATUS_PATH}"} if base else {}

    def after_sent(self, session: Session, item: OutboxItem, outcome: SendOutcome) -> None:
        """In the transaction that marks ``item`` sent: the message's outbound record, which its
        status callbacks update."""
        if outcome.provider_id:
            record_sent(session, item, outcome.provider_id)
