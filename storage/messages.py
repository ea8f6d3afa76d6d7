"""The messages table's one writer: every message in or out, on every channel, and the records of
phone calls. A provider's id (channel, provider_id) recognises a redelivery, so recording the
same message twice changes nothing.

- `add`: the messages of a conversation turn, in one statement (the engine; the turn's lock on
  the conversation keeps two deliveries of one message apart).
- `record_once`: a message or call record unless its provider id was recorded already;
  `set_payload` what it came to.
- `record_sent`, `record_status`: the record of a message we sent and its delivery status,
  which only moves forward (`DELIVERY_RANK`), whatever order the provider's callbacks come in.
- `mark_posts`, `mark_post`: a case's posts to staff, kept up with the case (posted, taken,
  settled).
- `status_of`: a provider's status word as a `MessageStatus` (UNKNOWN for one we do not know).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, case, func, insert, or_, select, update
from sqlalchemy.orm import Session

from storage.db import insert_statement
from storage.models import (
    Case,
    CaseStatus,
    ConversationState,
    Direction,
    Message,
    MessageStatus,
    OutboxItem,
    Staff,
)
from storage.types import utcnow

# How far along a message we sent is; a status only ever moves it forward. Twilio's statuses:
# https://www.twilio.com/docs/messaging/api/message-resource#message-status-values
DELIVERY_RANK = {
    MessageStatus.ACCEPTED: 1,
    MessageStatus.SCHEDULED: 1,
    MessageStatus.QUEUED: 2,
    MessageStatus.SENDING: 3,
    MessageStatus.SENT: 4,
    MessageStatus.CANCELED: 5,
    MessageStatus.FAILED: 5,
    MessageStatus.UNDELIVERED: 5,
    MessageStatus.PARTIALLY_DELIVERED: 5,
    MessageStatus.DELIVERED: 6,
    MessageStatus.READ: 7,  # WhatsApp
}
WATCHED_POSTS = (MessageStatus.POSTED, MessageStatus.TAKEN)
POST_OWNER = "owner"  # a taken post's payload: the Staff.id it names as having the case
POST_UNIT = "unit"  # a post's payload: the Unit.id whose queue the case was in when posted

_ADD = insert(Message.__table__)
_VALUES = {str(s) for s in MessageStatus}


def status_of(word: str) -> MessageStatus:
    """A provider's status word ("delivered", "no-answer") as ours; UNKNOWN if we know none."""
    word = word.strip().lower()
    return MessageStatus(word) if word in _VALUES else MessageStatus.UNKNOWN


def delivery_rank(status: str) -> int:
    """How far along a message we sent is at ``status`` (0: not a delivery status)."""
    return DELIVERY_RANK.get(status_of(status), 0)


def add(session: Session, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert ``rows`` (the columns of `Message`, statuses as `MessageStatus`) in one statement;
    a provider id recorded before breaks the unique constraint (the caller runs it again)."""
    session.execute(_ADD, list(rows))


def record_once(
    session: Session,
    *,
    channel: str,
    direction: Direction,
    address: str,
    provider_id: str,
    status: str,
    now: datetime,
    text: str = "",
    payload: Mapping[str, Any] | None = None,
    retiree_id: int | None = None,
    case_id: int | None = None,
) -> int | None:
    """Record a message unless (channel, provider_id) was recorded before; its id, or None when
    it was (a redelivery). ``status`` is ours or a provider's word (`status_of`); a word we do
    not know is stored as UNKNOWN and kept as it came in the payload's "status"."""
    known = status_of(status)
    payload = dict(payload or {})
    if known == MessageStatus.UNKNOWN and status != MessageStatus.UNKNOWN:
        payload["status"] = status
    row = {
        "channel": channel,
        "direction": direction,
        "address": address[:100],
        "provider_id": provider_id,
        "text": text,
        "payload": payload,
        "status": known,
        "retiree_id": retiree_id,
        "case_id": case_id,
        "created_at": now,
    }
    added = session.execute(insert_statement(session, "record_once", _insert_once), row).first()
    return added[0] if added is not None else None


def set_payload(session: Session, message_id: int, payload: Mapping[str, Any]) -> None:
    """What a message recorded in this transaction came to (e.g. the answer it was)."""
    table = Message.__table__
    session.execute(update(table).where(table.c.id == message_id).values(payload=dict(payload)))


def _insert_once(insert: Any) -> Any:
    table = Message.__table__
    return (
        insert(table)
        .on_conflict_do_nothing(index_elements=["channel", "provider_id"])
        .returning(table.c.id)  # not rowcount: psycopg says -1 for INSERT ... ON CONFLICT
    )


# -- messages we sent, and their delivery ------------------------------------------------------


def record_sent(
    session: Session,
    item: OutboxItem,
    provider_id: str,
    *,
    channels: Iterable[str],
    status: str = MessageStatus.QUEUED,
    now: datetime | None = None,
) -> Message:
    """The record of an outbox item the provider accepted as message ``provider_id`` (the
    worker calls this in the transaction that marks the item sent). A status callback that came
    first already made the row (on any of ``channels``): it is filled in, keeping the status it
    reached."""
    text = str(item.payload.get("text", ""))
    payload = {
        "kind": item.payload.get("kind"),
        "outbox_id": item.id,
        "idempotency_key": item.idempotency_key,
    }
    channels = tuple(channels)
    for _ in range(2):
        row = _outbound(session, channels, provider_id)
        if row is not None:
            row.text = text
            row.payload = {**payload, **(row.payload or {})}
            row.case_id = row.case_id or item.case_id
            row.address = item.address
            _advance(row, status_of(status), "")
            return row
        retiree_id = session.scalar(
            select(ConversationState.retiree_id).where(
                ConversationState.channel == item.channel,
                ConversationState.address == item.address,
            )
        )
        added = record_once(
            session,
            channel=item.channel,
            direction=Direction.OUTBOUND,
            address=item.address,
            provider_id=provider_id,
            status=status,
            now=now or utcnow(),
            text=text,
            payload=payload,
            case_id=item.case_id,
            retiree_id=retiree_id,
        )
        if added is not None:
            break
    return _required(session, channels, provider_id)


def record_status(
    session: Session,
    *,
    channel: str,
    channels: Iterable[str],
    provider_id: str,
    status: str,
    error_code: str = "",
    to: str = "",
    now: datetime | None = None,
) -> bool:
    """Apply a provider's delivery status to the message ``provider_id`` we sent (on one of
    ``channels``; a callback that comes before the worker's record makes the row, on
    ``channel`` to ``to``); False when it changes nothing (a repeat, or a status the message is
    already past). An error code is kept in the payload."""
    new = status_of(status)
    channels = tuple(channels)
    if not error_code and _advanced_in_one_statement(session, channels, provider_id, new):
        return True
    for _ in range(2):
        row = _outbound(session, channels, provider_id)
        if row is not None:
            return _advance(row, new, error_code)
        added = record_once(
            session,
            channel=channel,
            direction=Direction.OUTBOUND,
            address=to,
            provider_id=provider_id,
            status=status,
            now=now or utcnow(),
            payload={"error_code": error_code} if error_code else {},
        )
        if added is not None:
            return True
    return _advance(_required(session, channels, provider_id), new, error_code)


def _advance(row: Message, status: MessageStatus, error_code: str) -> bool:
    if DELIVERY_RANK.get(status, 0) <= delivery_rank(row.status):
        return False
    row.status = status
    if error_code:
        row.payload = {**(row.payload or {}), "error_code": error_code}
    return True


def _advanced_in_one_statement(
    session: Session, channels: tuple[str, ...], provider_id: str, status: MessageStatus
) -> bool:
    """The usual callback, a later status of a message we recorded: one UPDATE, no read first.

    False when it changed nothing; the caller then looks closer (no row yet, a repeat, a status
    the message is already past). On PostgreSQL a concurrent callback of the same message makes
    this one wait and check the status again, so a late "sent" never overwrites "delivered".
    """
    rank = DELIVERY_RANK.get(status, 0)
    if not rank:
        return False
    params = {"sid": provider_id, "new_status": status, "rank": rank, "channels": channels}
    return session.execute(_ADVANCE, params).first() is not None


def _advance_statement() -> Any:
    """Built once (a statement on a webhook's path: see storage.db.insert_statement)."""
    messages = Message.__table__
    ranks = {str(s): rank for s, rank in DELIVERY_RANK.items()}
    return (
        update(messages)
        .where(
            messages.c.channel.in_(bindparam("channels", expanding=True)),
            messages.c.provider_id == bindparam("sid"),
            messages.c.direction == Direction.OUTBOUND,
            case(ranks, value=messages.c.status, else_=0) < bindparam("rank"),
        )
        .values(status=bindparam("new_status"))
        .returning(messages.c.id)  # not rowcount: psycopg says -1 for some statements
    )


_ADVANCE = _advance_statement()


def _outbound(session: Session, channels: tuple[str, ...], provider_id: str) -> Message | None:
    return session.scalars(
        select(Message)
        .where(
            Message.channel.in_(channels),
            Message.provider_id == provider_id,
            Message.direction == Direction.OUTBOUND,
        )
        .with_for_update()
    ).first()


def _required(session: Session, channels: tuple[str, ...], provider_id: str) -> Message:
    row = _outbound(session, channels, provider_id)
    if row is None:
        raise LookupError(f"no outbound message {provider_id!r} (a conflicting inbound row?)")
    return row


# -- posts of a case to staff ------------------------------------------------------------------


def changed_posts(session: Session, channel: str, limit: int) -> list[Any]:
    """Posts of cases on ``channel`` that their case left behind, for the channel's upkeep: a
    post still offering a case no longer open, or naming as owner someone who no longer has
    it. Rows of (post, its case, the case's owner or None), oldest post first."""
    return list(
        session.execute(
            select(Message, Case, Staff)
            .join(Case, Case.id == Message.case_id)
            .outerjoin(Staff, Staff.id == Case.assignee_id)
            .where(Message.channel == channel, Message.status.in_(WATCHED_POSTS))
            .where(
                or_(
                    and_(Message.status == MessageStatus.POSTED, Case.status != CaseStatus.OPEN),
                    and_(
                        Message.status == MessageStatus.TAKEN,
                        or_(
                            Case.status != CaseStatus.CLAIMED,
                            func.coalesce(Message.payload[POST_OWNER].as_integer(), 0)
                            != Case.assignee_id,
                        ),
                    ),
                )
            )
            .order_by(Message.id)
            .limit(limit)
        ).all()
    )


def moved_posts(session: Session, channel: str, limit: int) -> list[Any]:
    """Posts on ``channel`` still offering an open case that has moved to another unit's queue
    since (posts that recorded their unit, `POST_UNIT`). Rows of (post, its case)."""
    posted_in = Message.payload[POST_UNIT].as_integer()
    return list(
        session.execute(
            select(Message, Case)
            .join(Case, Case.id == Message.case_id)
            .where(Message.channel == channel, Message.status == MessageStatus.POSTED)
            .where(Case.status == CaseStatus.OPEN, posted_in.is_not(None))
            .where(posted_in != Case.unit_id)
            .order_by(Message.id)
            .limit(limit)
        ).all()
    )


def mark_posts(
    session: Session, channel: str, case_id: int, status: MessageStatus, payload: Mapping[str, Any]
) -> None:
    """Every post on ``channel`` of case ``case_id`` still kept up (`WATCHED_POSTS`) now at
    ``status`` (another channel's posts are kept up by that channel)."""
    session.execute(
        update(Message)
        .where(
            Message.channel == channel,
            Message.case_id == case_id,
            Message.status.in_(WATCHED_POSTS),
        )
        .values(status=status, payload=dict(payload))
        .execution_options(synchronize_session=False)
    )


def mark_post(post: Message, status: MessageStatus, payload: Mapping[str, Any] | None) -> None:
    """One post (loaded in the session) at ``status``, with ``payload`` when given."""
    post.status = status
    if payload is not None:
        post.payload = dict(payload)
