"""The outbox: notifications written in the same transaction as the change that caused them,
then sent (and retried) by a worker. Nothing is sent twice for one idempotency key."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.db import dialect_insert
from storage.models import OutboxItem, OutboxStatus
from storage.types import utcnow

# Seconds to wait before attempt n+1 after n failures; the last failure makes the item dead.
RETRY_DELAYS = (10, 30, 120, 600, 1800, 3600)


def enqueue(
    session: Session,
    *,
    channel: str,
    address: str,
    payload: dict[str, Any],
    idempotency_key: str,
    priority: int = 3,
    case_id: int | None = None,
    now: datetime | None = None,
) -> OutboxItem:
    """Add a notification unless one with the same key exists; return the stored one."""
    now = now or utcnow()
    table = OutboxItem.__table__
    insert = dialect_insert(session)
    session.execute(
        insert(table)
        .values(
            channel=channel,
            address=address,
            payload=payload,
            idempotency_key=idempotency_key,
            priority=priority,
            status=OutboxStatus.PENDING.value,
            attempts=0,
            next_attempt_at=now,
            last_error="",
            case_id=case_id,
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
    )
    return session.scalars(
        select(OutboxItem).where(OutboxItem.idempotency_key == idempotency_key)
    ).one()


def claim_due(
    session: Session, *, limit: int = 20, now: datetime | None = None
) -> list[OutboxItem]:
    """Take up to ``limit`` items that are due, most urgent first, and mark them sending.

    Rows are locked with SKIP LOCKED on PostgreSQL, so several senders share the work.
    """
    now = now or utcnow()
    items = list(
        session.scalars(
            select(OutboxItem)
            .where(OutboxItem.status == OutboxStatus.PENDING, OutboxItem.next_attempt_at <= now)
            .order_by(OutboxItem.priority, OutboxItem.next_attempt_at, OutboxItem.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )
    for item in items:
        item.status = OutboxStatus.SENDING
        item.attempts += 1
        item.next_attempt_at = now  # "sending since", for release_stuck
    session.flush()
    return items


def mark_sent(item: OutboxItem, *, now: datetime | None = None) -> None:
    item.status = OutboxStatus.SENT
    item.sent_at = now or utcnow()
    item.last_error = ""


def mark_failed(item: OutboxItem, error: str, *, now: datetime | None = None) -> None:
    """Schedule the next attempt, or give up (dead) after the last one."""
    now = now or utcnow()
    item.last_error = error[:2000]
    if item.attempts > len(RETRY_DELAYS):
        item.status = OutboxStatus.DEAD
        return
    item.status = OutboxStatus.PENDING
    item.next_attempt_at = now + timedelta(seconds=RETRY_DELAYS[item.attempts - 1])


def release_stuck(
    session: Session, *, older_than: timedelta = timedelta(minutes=5), now: datetime | None = None
) -> int:
    """Put back items left 'sending' by a sender that died mid-way; returns how many."""
    now = now or utcnow()
    stuck = session.scalars(
        select(OutboxItem).where(
            OutboxItem.status == OutboxStatus.SENDING,
            OutboxItem.next_attempt_at <= now - older_than,
        )
    ).all()
    for item in stuck:
        item.status = OutboxStatus.PENDING
        item.next_attempt_at = now
    return len(stuck)
