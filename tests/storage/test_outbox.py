"""The outbox: idempotent enqueue, due order, retries with back-off, and shared sending."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from storage import outbox
from storage.models import OutboxItem, OutboxStatus

NOW = datetime(2026, 6, 1, 2, 0, tzinfo=UTC)


def put(session: Session, key: str, priority: int = 3, now: datetime = NOW) -> OutboxItem:
    return outbox.enqueue(
        session,
        channel="sms",
        address="+8613800000000",
        payload={"text": f"hello {key}"},
        idempotency_key=key,
        priority=priority,
        now=now,
    )


def test_enqueue_is_idempotent(session: Session) -> None:
    first = put(session, "case-1:ack")
    again = outbox.enqueue(
        session,
        channel="sms",
        address="+8613800000001",
        payload={"text": "other"},
        idempotency_key="case-1:ack",
        now=NOW,
    )
    assert again.id == first.id
    assert again.payload == {"text": "hello case-1:ack"}
    assert session.scalar(select(func.count()).select_from(OutboxItem)) == 1


def test_claim_due_takes_urgent_first_and_skips_future(session: Session) -> None:
    put(session, "normal", priority=3)
    put(session, "urgent", priority=1)
    put(session, "later", priority=1, now=NOW + timedelta(hours=1))
    items = outbox.claim_due(session, now=NOW)
    assert [i.idempotency_key for i in items] == ["urgent", "normal"]
    assert all(i.status == OutboxStatus.SENDING and i.attempts == 1 for i in items)
    assert outbox.claim_due(session, now=NOW) == []


def test_failures_back_off_then_die(session: Session) -> None:
    item = put(session, "k")
    now = NOW
    for expected_delay in outbox.RETRY_DELAYS:
        (claimed,) = outbox.claim_due(session, now=now)
        outbox.mark_failed(claimed, "gateway timeout", now=now)
        assert claimed.status == OutboxStatus.PENDING
        assert claimed.next_attempt_at == now + timedelta(seconds=expected_delay)
        assert outbox.claim_due(session, now=now) == []
        now = claimed.next_attempt_at
    (claimed,) = outbox.claim_due(session, now=now)
    outbox.mark_failed(claimed, "gateway timeout", now=now)
    assert item.status == OutboxStatus.DEAD
    assert item.attempts == len(outbox.RETRY_DELAYS) + 1
    assert item.last_error == "gateway timeout"


def test_mark_sent(session: Session) -> None:
    put(session, "k")
    (item,) = outbox.claim_due(session, now=NOW)
    outbox.mark_sent(item, now=NOW)
    assert item.status == OutboxStatus.SENT and item.sent_at == NOW


def test_release_stuck_puts_back_items_of_a_dead_sender(session: Session) -> None:
    put(session, "k")
    (item,) = outbox.claim_due(session, now=NOW)
    assert outbox.release_stuck(session, now=NOW + timedelta(minutes=1)) == 0
    assert outbox.release_stuck(session, now=NOW + timedelta(minutes=6)) == 1
    assert item.status == OutboxStatus.PENDING


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_two_senders_share_the_work(engine, session: Session) -> None:
    for n in range(10):
        put(session, f"k{n}")
    session.commit()
    with Session(engine) as a, Session(engine) as b:
        first = outbox.claim_due(a, limit=6, now=NOW)  # a holds its rows locked
        second = outbox.claim_due(b, limit=6, now=NOW)
        assert len(first) == 6 and len(second) == 4
        assert not {i.id for i in first} & {i.id for i in second}
        a.commit()
        b.commit()
