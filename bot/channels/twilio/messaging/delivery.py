"""The outbound record of an SMS or WhatsApp message we sent (the `Message` whose provider id is
Twilio's message sid) and its delivery status, which Twilio's status callbacks move forward only
(queued → sent → delivered → read; failed and undelivered end it)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, case, select, update
from sqlalchemy.orm import Session

from storage.db import dialect_insert
from storage.models import ConversationState, Direction, Message, OutboxItem
from storage.types import utcnow

SMS = "sms"
WHATSAPP = "whatsapp"
WHATSAPP_PREFIX = "whatsapp:"


def channel_of(address: str) -> str:
    """ "whatsapp" for a ``whatsapp:+...`` address, otherwise "sms"."""
    return WHATSAPP if address.startswith(WHATSAPP_PREFIX) else SMS


# How far along a message is; a status callback only ever moves it forward. Twilio's statuses:
# https://www.twilio.com/docs/messaging/api/message-resource#message-status-values
_RANK = {
    "accepted": 1,
    "scheduled": 1,
    "queued": 2,
    "sending": 3,
    "sent": 4,
    "canceled": 5,
    "failed": 5,
    "undelivered": 5,
    "partially_delivered": 5,
    "delivered": 6,
    "read": 7,  # WhatsApp
}


FAILED_STATUSES = frozenset({"failed", "undelivered"})


def record_sent(
    session: Session,
    item: OutboxItem,
    provider_id: str,
    *,
    status: str = "queued",
    now: datetime | None = None,
) -> Message:
    """The outbound record of an outbox item Twilio accepted as message ``provider_id`` (the
    worker calls this in the transaction that marks the item sent). A status callback that came
    first already made the row: it is filled in, keeping the status it reached."""
    text = str(item.payload.get("text", ""))
    payload = {
        "kind": item.payload.get("kind"),
        "outbox_id": item.id,
        "idempotency_key": item.idempotency_key,
    }
    for _ in range(2):
        row = _outbound(session, provider_id)
        if row is not None:
            row.text = text
            row.payload = {**payload, **(row.payload or {})}
            row.case_id = row.case_id or item.case_id
            row.address = item.address
            _advance(row, status, "")
            return row
        retiree_id = session.scalar(
            select(ConversationState.retiree_id).where(
                ConversationState.channel == item.channel,
                ConversationState.address == item.address,
            )
        )
        if _insert_outbound(
            session,
            channel=item.channel,
            address=item.address,
            provider_id=provider_id,
            status=status,
            now=now or utcnow(),
            text=text,
            payload=payload,
            case_id=item.case_id,
            retiree_id=retiree_id,
        ):
            break
    return _required(session, provider_id)


def record_status(
    session: Session,
    *,
    provider_id: str,
    status: str,
    error_code: str = "",
    to: str = "",
    now: datetime | None = None,
) -> bool:
    """Apply a status callback to the outbound message ``provider_id``; False when it changes
    nothing (a repeat, or a status the message is already past)."""
    status = status.lower()
    if not error_code and _advanced_in_one_statement(session, provider_id, status):
        return True
    for _ in range(2):
        row = _outbound(session, provider_id)
        if row is not None:
            return _advance(row, status, error_code)
        if _insert_outbound(
            session,
            channel=channel_of(to),
            address=to,
            provider_id=provider_id,
            status=status,
            now=now or utcnow(),
            payload={"error_code": error_code} if error_code else {},
        ):
            return True
    return _advance(_required(session, provider_id), status, error_code)


def status_rank(status: str) -> int:
    """How far along ``status`` is (0: not a Twilio status we know)."""
    return _RANK.get(status, 0)


def _advance(row: Message, status: str, error_code: str) -> bool:
    if status_rank(status) <= status_rank(row.status):
        return False
    row.status = status
    if error_code:
        row.payload = {**(row.payload or {}), "error_code": error_code}
    return True


def _advanced_in_one_statement(session: Session, provider_id: str, status: str) -> bool:
    """The usual callback, a later status of a message we recorded: one UPDATE, no read first.

    False when it changed nothing; the caller then looks closer (no row yet, a repeat, a status
    the message is already past). On PostgreSQL a concurrent callback of the same message makes
    this one wait and check the status again, so a late "sent" never overwrites "delivered".
    """
    rank = status_rank(status)
    if not rank:
        return False
    params = {"sid": provider_id, "new_status": status, "rank": rank}
    return session.execute(_ADVANCE, params).first() is not None


def _advance_statement() -> Any:
    """Built once (a statement on a webhook's path: see storage.db.insert_statement)."""
    messages = Message.__table__
    return (
        update(messages)
        .where(
            messages.c.channel.in_((SMS, WHATSAPP)),
            messages.c.provider_id == bindparam("sid"),
            messages.c.direction == Direction.OUTBOUND,
            case(_RANK, value=messages.c.status, else_=0) < bindparam("rank"),
        )
        .values(status=bindparam("new_status"))
        .returning(messages.c.id)  # not rowcount: psycopg says -1 for some statements
    )


_ADVANCE = _advance_statement()


def _outbound(session: Session, provider_id: str) -> Message | None:
    return session.scalars(
        select(Message)
        .where(
            Message.channel.in_((SMS, WHATSAPP)),
            Message.provider_id == provider_id,
            Message.direction == Direction.OUTBOUND,
        )
        .with_for_update()
    ).first()


def _required(session: Session, provider_id: str) -> Message:
    row = _outbound(session, provider_id)
    if row is None:
        raise LookupError(f"no outbound message {provider_id!r} (a conflicting inbound row?)")
    return row


def _insert_outbound(
    session: Session,
    *,
    channel: str,
    address: str,
    provider_id: str,
    status: str,
    now: datetime,
    text: str = "",
    payload: dict[str, Any] | None = None,
    case_id: int | None = None,
    retiree_id: int | None = None,
) -> bool:
    """Insert the row unless one with this (channel, provider id) exists; True if inserted."""
    added = session.execute(
        dialect_insert(session)(Message.__table__)
        .values(
            channel=channel,
            direction=Direction.OUTBOUND.value,
            address=address[:100],
            provider_id=provider_id,
            text=text,
            payload=payload or {},
            status=status[:20],
            case_id=case_id,
            retiree_id=retiree_id,
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["channel", "provider_id"])
        .returning(Message.__table__.c.id)  # not rowcount: psycopg says -1 here
    )
    return added.first() is not None
