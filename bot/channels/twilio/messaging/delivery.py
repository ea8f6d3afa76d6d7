"""The record of an SMS or WhatsApp message we sent (the `Message` whose provider id is Twilio's
message sid) and its delivery status, which Twilio's status callbacks move forward only (queued →
sent → delivered → read; failed and undelivered end it): storage/messages.py for these two
channels."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from storage import messages
from storage.models import Message, MessageStatus, OutboxItem

SMS = "sms"
WHATSAPP = "whatsapp"
WHATSAPP_PREFIX = "whatsapp:"


def channel_of(address: str) -> str:
    """ "whatsapp" for a ``whatsapp:+...`` address, otherwise "sms"."""
    return WHATSAPP if address.startswith(WHATSAPP_PREFIX) else SMS


CHANNELS = (SMS, WHATSAPP)
FAILED_STATUSES = frozenset({MessageStatus.FAILED, MessageStatus.UNDELIVERED})
status_rank = messages.delivery_rank


def record_sent(
    session: Session,
    item: OutboxItem,
    provider_id: str,
    *,
    status: str = MessageStatus.QUEUED,
    now: datetime | None = None,
) -> Message:
    """The record of an outbox item Twilio accepted as message ``provider_id`` (the sender's
    ``after_sent``); a status callback that came first made the row, which is filled in."""
    return messages.record_sent(
        session, item, provider_id, channels=CHANNELS, status=status, now=now
    )


def record_status(
    session: Session,
    *,
    provider_id: str,
    status: str,
    error_code: str = "",
    to: str = "",
    now: datetime | None = None,
) -> bool:
    """Apply Twilio's status callback to the message ``provider_id`` we sent; False when it
    changes nothing (a repeat, or a status the message is already past)."""
    return messages.record_status(
        session,
        channel=channel_of(to),
        channels=CHANNELS,
        provider_id=provider_id,
        status=status,
        error_code=error_code,
        to=to,
        now=now,
    )
