"""The outbox: idempotent enqueue, due order, retries with back-off, and shared sending."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from storage import outbox
from storage.models import CaseEvent, OutboxItem, OutboxStatus

NOW = datetime(2026, 6, 1, 2, 0, tzinfo=UTC)


def put(session: Session, key: str, priority: int = 3, now: datetime = NOW) -> OutboxItem:
    item_id = outbox.enqueue(
        session,
        channel="sms",
        address="+8613800000000",
        payload={"text": f"hello {key}"},
        idempotency_key=key,
        priority=priority,
        now=now,
    )
    return session.get_one(OutboxItem, item_id)


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
    assert again == first.id
    stored = session.get_one(OutboxItem, again)
    assert stored.payload == {"text": "hello case-1:ack"}
    assert stored.address == "+8613800000000"
    assert (stored.status, stored.attempts, stored.next_attempt_at) == (
        OutboxStatus.PENDING,
        0,
        NOW,
    )
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
    assert outbox.release_stuck(session, now=NOW + timedelta(seconds=59)) == 0
    assert outbox.release_stuck(session, now=NOW + timedelta(seconds=61)) == 1
    assert item.status == OutboxStatus.PENDING
    assert item.unsure_since == NOW  # when the lost attempt began: the provider may have it
    (again,) = outbox.claim_due(session, now=NOW + timedelta(seconds=62))
    outbox.mark_sent(again, now=NOW + timedelta(seconds=63))
    assert again.unsure_since is None


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


def test_a_permanent_failure_dies_at_once(session: Session) -> None:
    put(session, "k")
    (item,) = outbox.claim_due(session, now=NOW)
    outbox.mark_failed(item, "twilio 400 code 21211: invalid 'To' number", permanent=True, now=NOW)
    assert item.status == OutboxStatus.DEAD and item.attempts == 1
    assert outbox.claim_due(session, now=NOW + timedelta(days=1)) == []


@pytest.mark.parametrize("retry_after, expected", [(45, 45), (3, 10), (None, 10), (7200, 7200)])
def test_retry_after_is_honoured_never_earlier(
    session: Session, retry_after: float | None, expected: float
) -> None:
    put(session, "k")
    (item,) = outbox.claim_due(session, now=NOW)
    outbox.mark_failed(item, "429", retry_after_s=retry_after, now=NOW)
    assert item.status == OutboxStatus.PENDING
    assert item.next_attempt_at == NOW + timedelta(seconds=expected)


def test_claim_due_only_for_the_given_channels(session: Session) -> None:
    put(session, "sms")
    outbox.enqueue(
        session,
        channel="telegram",
        address="7",
        payload={"text": "hi"},
        idempotency_key="tg",
        now=NOW,
    )
    assert outbox.claim_due(session, now=NOW, channels=[]) == []
    (item,) = outbox.claim_due(session, now=NOW, channels={"telegram"})
    assert item.idempotency_key == "tg"


def test_held_only_by_the_claim_that_made_the_attempt(session: Session) -> None:
    put(session, "k")
    (item,) = outbox.claim_due(session, now=NOW)
    assert outbox.held(session, item.id, 1) is item
    outbox.release_stuck(session, now=NOW + timedelta(minutes=6))
    assert outbox.held(session, item.id, 1) is None  # released: pending
    outbox.claim_due(session, now=NOW + timedelta(minutes=6))
    assert outbox.held(session, item.id, 1) is None  # claimed again: attempt 2's
    assert outbox.held(session, item.id, 2) is item


def case_with_item(session: Session, key: str = "k", channel: str = "sms"):
    from storage import actions
    from storage.permissions import Actor
    from tests.factories import make_retiree, make_unit_tree

    tree = make_unit_tree(session)
    retiree = make_retiree(session, tree.community_a1)
    case = actions.file_case(
        session, category="emergency", channel="voice", actor=Actor.system(), retiree=retiree
    )
    item_id = outbox.enqueue(
        session,
        channel=channel,
        address="+8613800000001",
        payload={"kind": "emergency_call", "text": "help", "language": "zh"},
        idempotency_key=key,
        case_id=case.id,
        now=NOW,
    )
    return case, session.get_one(OutboxItem, item_id)


def notes_of(session: Session, case) -> list[CaseEvent]:
    return list(
        session.scalars(
            select(CaseEvent).where(CaseEvent.case_id == case.id, CaseEvent.action == "note")
        )
    )


def test_a_dead_item_of_a_case_shows_on_its_timeline(session: Session) -> None:
    case, _ = case_with_item(session, channel="voice")
    (item,) = outbox.claim_due(session, now=NOW)
    outbox.mark_failed(item, "twilio 400 code 21614: not a mobile", permanent=True, now=NOW)
    (note,) = notes_of(session, case)
    assert note.actor_label == "worker" and note.actor_id is None
    assert note.note == (
        "紧急电话（voice）发送到 +8613800000001 失败，已尝试 1 次："
        "twilio 400 code 21614: not a mobile。请用其他方式联系。"
    )
    outbox.mark_failed(item, "again", permanent=True, now=NOW)  # (a repeat adds another)
    assert len(notes_of(session, case)) == 2


def test_failed_deliveries_for_the_console(session: Session) -> None:
    case, _ = case_with_item(session, key="with-case")
    put(session, "no-case")
    for item in outbox.claim_due(session, now=NOW):
        outbox.mark_failed(item, "blocked", permanent=True, now=NOW)
    put(session, "fine")
    assert {i.idempotency_key for i in outbox.failed_deliveries(session)} == {
        "with-case",
        "no-case",
    }
    (mine,) = outbox.failed_deliveries(session, unit_ids=[case.unit_id])
    assert mine.idempotency_key == "with-case"
    assert outbox.failed_deliveries(session, unit_ids=[]) == []
    outbox.requeue(mine, now=NOW)
    assert mine.status == OutboxStatus.PENDING and mine.attempts == 0
    assert {i.idempotency_key for i in outbox.claim_due(session, now=NOW)} == {"fine", "with-case"}


def test_release_stuck_gives_up_after_the_last_attempt(session: Session) -> None:
    case, item = case_with_item(session)
    item.attempts = len(outbox.RETRY_DELAYS)
    outbox.claim_due(session, now=NOW)
    assert outbox.release_stuck(session, now=NOW + timedelta(minutes=6)) == 1
    assert item.status == OutboxStatus.DEAD
    (note,) = notes_of(session, case)
    assert "发件程序在发送时中断" in note.note


def test_flag_unsendable_says_why_and_gives_up_late(session: Session) -> None:
    case, item = case_with_item(session, channel="whatsapp")
    put(session, "sms")
    assert outbox.flag_unsendable(session, channels_with_sender={"sms"}, now=NOW) == 1
    assert item.status == OutboxStatus.PENDING and item.attempts == 0
    assert item.last_error == "whatsapp 渠道没有配置发件方式"
    assert outbox.flag_unsendable(session, channels_with_sender={"sms"}, now=NOW) == 0
    later = NOW + outbox.NO_SENDER_GIVE_UP_AFTER
    assert outbox.flag_unsendable(session, channels_with_sender={"sms"}, now=later) == 1
    assert item.status == OutboxStatus.DEAD
    assert len(notes_of(session, case)) == 1
    (sms,) = outbox.claim_due(session, now=later)
    assert sms.last_error == ""
