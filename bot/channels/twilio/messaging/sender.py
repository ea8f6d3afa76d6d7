"""Sends SMS and WhatsApp messages of the outbox through Twilio's Messages API (``whatsapp:+...``
addresses for WhatsApp); their delivery reports come back to the status route when the public
URL is known."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from bot.channels.base import SendOutcome
from bot.channels.twilio.messaging.delivery import WHATSAPP_PREFIX, record_sent
from bot.channels.twilio.rest import TwilioRestSender
from storage.models import OutboxItem

STATUS_PATH = "/twilio/messaging/status"


def _whatsapp(address: str) -> str:
    return address if address.startswith(WHATSAPP_PREFIX) else f"{WHATSAPP_PREFIX}{address}"


class MessagingSender(TwilioRestSender):
    """SMS and WhatsApp messages through Twilio."""

    channels = ("sms", "whatsapp")

    async def send(
        self, channel: str, address: str, payload: dict[str, Any], idempotency_key: str
    ) -> SendOutcome:
        text = str(payload.get("text") or "")
        refused = self._unsendable(channel, text)
        if refused is not None:
            return refused
        if channel == "whatsapp" and not self.settings.twilio_whatsapp_from:
            return SendOutcome.retry("no WhatsApp sender configured (HOTLINE_TWILIO_WHATSAPP_FROM)")
        if channel == "whatsapp":
            to, from_ = _whatsapp(address), _whatsapp(self.settings.twilio_whatsapp_from)
        else:
            to, from_ = address, self.settings.twilio_from_number
        options = dict(to=to, from_=from_, body=text, **self._status_callback())
        return await self._create(
            lambda client: client.messages.create_async(**options), idempotency_key
        )

    def _status_callback(self) -> dict[str, str]:
        """Delivery reports of messages go to the messaging channel's status route."""
        base = self.settings.public_url.rstrip("/")
        return {"status_callback": f"{base}{STATUS_PATH}"} if base else {}

    def after_sent(self, session: Session, item: OutboxItem, outcome: SendOutcome) -> None:
        """In the transaction that marks ``item`` sent: the message's outbound record, which its
        status callbacks update."""
        if outcome.provider_id:
            record_sent(session, item, outcome.provider_id)
