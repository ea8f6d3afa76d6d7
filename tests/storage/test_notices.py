"""The retiree is told when their case is claimed and resolved: where the message goes, what it
says, and that it is written once per claim in the action's transaction, on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from storage import actions, notices
from storage.models import (
    Case,
    CaseEvent,
    Direction,
    Message,
    MessageStatus,
    MessagingIdentity,
    OutboxItem,
    Retiree,
    RetireePhone,
    RetireeStatus,
    Role,
    Staff,
)
from storage.permissions import Actor
from tests.factories import UnitTree, make_retiree, make_staff, make_unit_tree

# Monday 7 December 2026, 10:00 in Shanghai. help_request: resolve within 2 working days,
# so by Wednesday 9 December at 10:00.
NOW = datetime(2026, 12, 7, 2, 0, tzinfo=UTC)
CLAIM_AT = NOW + timedelta(minutes=5)
FIRST_PHONE = "+8613912340001"
SECOND_PHONE = "+8613912340002"
CALLER = "+8613812345678"
SYSTEM = Actor.system()


@pytest.fixture
def units(session: Session) -> UnitTree:
    return make_unit_tree(session)


@pytest.fixture
def volunteer(session: Session, units: UnitTree) -> Staff:
    return make_staff(
        session, Role.VOLUNTEER, [units.community_a1], name="王芳", phone="+8613700007777"
    )


def retiree(session: Session, units: UnitTree, **kw: Any) -> Retiree:
    person = make_retiree(session, units.community_a1, phone=FIRST_PHONE, **kw)
    person.phones.append(RetireePhone(number=SECOND_PHONE))
    session.flush()
    return person


def file(
    session: Session,
    units: UnitTree,
    *,
    channel: str = "sms",
    category: str = "help_request",
    person: Retiree | None = None,
    came_from: tuple[str, str] | None = None,
    **kw: Any,
) -> Case:
    """A case as a channel files it; ``came_from``: the (channel, address) of the inbound
    message the engine records with the case."""
    if person is None and "unit" not in kw:
        person = retiree(session, units)
    case = actions.file_case(
        session,
        category=category,
        channel=channel,
        actor=SYSTEM,
        retiree=person,
        now=NOW,
        **kw,
    )
    if came_from is not None:
        said(session, *came_from, person, case=case)
    return case


def said(
    session: Session,
    channel: str,
    address: str,
    person: Retiree | None,
    *,
    case: Case | None = None,
    at: datetime = NOW,
) -> None:
    session.add(
        Message(
            channel=channel,
            direction=Direction.INBOUND,
            status=MessageStatus.RECEIVED,
            address=address,
            text="…",
            retiree_id=person.id if person is not None else None,
            case_id=case.id if case is not None else None,
            created_at=at,
        )
    )
    session.flush()


def outbox(session: Session) -> list[OutboxItem]:
    return list(session.scalars(select(OutboxItem).order_by(OutboxItem.id)))


def skipped(session: Session, case: Case) -> list[CaseEvent]:
    return list(
        session.scalars(
            select(CaseEvent).where(
                CaseEvent.case_id == case.id, CaseEvent.action == notices.SKIPPED
            )
        )
    )


def claim(session: Session, case: Case, staff: Staff, at: datetime = CLAIM_AT) -> OutboxItem:
    actions.claim(session, case, Actor.person(staff), now=at)
    (item,) = outbox(session)
    return item


# -- what it says ------------------------------------------------------------------------------


def test_a_claim_tells_who_and_by_when_in_one_outbox_row(
    session: Session, units: UnitTree, volunteer: Staff
) -> None:
    case = file(session, units, came_from=("sms", CALLER))
    item = claim(session, case, volunteer)
    assert (item.channel, item.address) == ("sms", CALLER)
    assert item.payload == {
        "kind": "case_claimed",
        "case": case.number,
        "text": f"【社区一键通】您的求助（编号{case.number}）已由志愿者王芳接手，"
        "争取在12月9日星期三 10:00前为您办好。",
        "language": "zh",
        # For an SMS template (Alibaba Cloud sends no free text).
        "fields": {"who": "志愿者王芳", "by": "12月9日星期三 10:00"},
    }
    assert item.case_id == case.id
    assert item.idempotency_key == f"{case.number}:case_claimed:1"
    assert item.priority == notices.PRIORITY
    assert item.next_attempt_at == CLAIM_AT  # due at once
    assert "7777" not in item.payload["text"]  # never the volunteer's phone


def test_a_retiree_who_prefers_english_is_told_in_english(
    session: Session, units: UnitTree
) -> None:
    staff = make_staff(session, Role.STAFF, [units.community_a1], name="Anna Smith")
    person = retiree(session, units, preferred_language="en")
    case = file(session, units, person=person, came_from=("sms", CALLER))
    item = claim(session, case, staff)
    assert item.payload["language"] == "en"
    assert item.payload["text"] == (
        f"[Community Hotline] Your request (case {case.number}) has been taken on by Anna of "
        "the community staff. We aim to finish it by Wednesday 9 December, 10:00."
    )


def test_a_claim_past_the_deadline_promises_no_time(
    session: Session, units: UnitTree, volunteer: Staff
) -> None:
    case = file(session, units, came_from=("sms", CALLER))
    item = claim(session, case, volunteer, at=NOW + timedelta(days=3))
    assert item.payload["text"] == (
        f"【社区一键通】您的求助（编号{case.number}）已由志愿者王芳接手，会尽快为您办理。"
    )


def test_an_emergency_claim_says_it_is_in_hand_and_to_call_120(
    session: Session, units: UnitTree
) -> None:
    staff = make_staff(session, Role.STAFF, [units.community_a1], name="李强")
    case = file(session, units, channel="phone", category="emergency", came_from=("phone", CALLER))
    item = claim(session, case, staff)
    assert (item.channel, item.address) == ("sms", CALLER)
    assert item.payload["text"] == (
        f"【社区一键通】您的紧急求助（编号{case.number}）已由工作人员李强接手，正在处理。"
        "如有危险，请立即拨打120。"
    )


def test_resolving_tells_the_outcome(session: Session, units: UnitTree, volunteer: Staff) -> None:
    case = file(session, units, came_from=("sms", CALLER))
    actions.claim(session, case, Actor.person(volunteer), now=CLAIM_AT)
    actions.resolve(
        session, case, Actor.person(volunteer), outcome="米和油已经送到\n家里", now=CLAIM_AT
    )
    claimed, resolved = outbox(session)
    assert claimed.payload["kind"] == "case_claimed"
    assert (resolved.channel, resolved.address) == ("sms", CALLER)
    assert resolved.payload["kind"] == "case_resolved"
    assert resolved.payload["text"] == (
        f"【社区一键通】您的求助（编号{case.number}）已办结：米和油已经送到 家里"
    )
    assert resolved.idempotency_key == f"{case.number}:case_resolved:1"


@pytest.mark.parametrize("category", ["complaint", "bereavement", "emergency"])
def test_a_sensitive_outcome_is_not_repeated_to_the_retiree(
    session: Session, units: UnitTree, category: str
) -> None:
    staff = make_staff(session, Role.STAFF, [units.station_a], name="李强")
    case = file(session, units, category=category, came_from=("sms", CALLER))
    actions.claim(session, case, Actor.person(staff), now=CLAIM_AT)
    actions.resolve(session, case, Actor.person(staff), outcome="住院治疗，血压很高", now=CLAIM_AT)
    claimed, resolved = outbox(session)
    for item in (claimed, resolved):
        assert "住院" not in item.payload["text"] and "血压" not in item.payload["text"]
    assert resolved.payload["text"] == (
        f"【社区一键通】您的求助（编号{case.number}）已办结。如有疑问，请联系社区。"
    )


def test_a_long_outcome_is_shortened(session: Session, units: UnitTree, volunteer: Staff) -> None:
    case = file(session, units, came_from=("sms", CALLER))
    actions.claim(session, case, Actor.person(volunteer), now=CLAIM_AT)
    actions.resolve(session, case, Actor.person(volunteer), outcome="好" * 1000, now=CLAIM_AT)
    text = outbox(session)[-1].payload["text"]
    assert text.endswith("好" * (notices.OUTCOME_MAX - 1) + "…")


# -- where it goes -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("came_from", "expected"),
    [
        (("sms", CALLER), ("sms", CALLER)),
        (("phone", CALLER), ("sms", CALLER)),  # the one-key phone receives SMS
        (("whatsapp", f"whatsapp:{CALLER}"), ("whatsapp", f"whatsapp:{CALLER}")),
        (("telegram", "7001"), ("telegram", "7001")),
        (("phone", "withheld:CA123"), ("sms", FIRST_PHONE)),  # no number to answer
    ],
)
def test_the_message_goes_back_where_the_request_came_from(
    session: Session,
    units: UnitTree,
    volunteer: Staff,
    came_from: tuple[str, str],
    expected: tuple[str, str],
) -> None:
    case = file(session, units, channel=came_from[0], came_from=came_from)
    item = claim(session, case, volunteer)
    assert (item.channel, item.address) == expected


def test_a_case_filed_after_the_caller_hung_up_goes_to_the_number_they_called_from(
    session: Session, units: UnitTree, volunteer: Staff
) -> None:
    person = retiree(session, units)
    said(session, "phone", "+8613800000099", person, at=NOW - timedelta(days=30))
    said(session, "phone", CALLER, person, at=NOW - timedelta(minutes=2))
    said(session, "phone", "+8613800000098", person, at=NOW + timedelta(minutes=1))  # later
    case = file(session, units, channel="phone", person=person)  # no message with the case
    item = claim(session, case, volunteer)
    assert (item.channel, item.address) == ("sms", CALLER)


def test_a_telegram_case_without_its_message_goes_to_the_linked_account(
    session: Session, units: UnitTree, volunteer: Staff
) -> None:
    person = retiree(session, units)
    session.add(MessagingIdentity(retiree_id=person.id, channel="telegram", address="7002"))
    case = file(session, units, channel="telegram", person=person)
    item = claim(session, case, volunteer)
    assert (item.channel, item.address) == ("telegram", "7002")


def test_an_unknown_callers_call_back_goes_to_the_number_that_called(
    session: Session, units: UnitTree
) -> None:
    staff = make_staff(session, Role.STAFF, [units.community_a1])
    case = file(
        session,
        units,
        channel="phone",
        category="callback",
        unit=units.community_a1,
        details={"caller": CALLER, "language": "en"},
    )
    item = claim(session, case, staff)
    assert (item.channel, item.address, item.payload["language"]) == ("sms", CALLER, "en")


def test_a_case_staff_filed_goes_to_the_retirees_first_phone(
    session: Session, units: UnitTree, volunteer: Staff
) -> None:
    case = file(session, units, channel="walk_in")
    item = claim(session, case, volunteer)
    assert (item.channel, item.address) == ("sms", FIRST_PHONE)


def test_an_unknown_caller_staff_filed_gets_the_number_staff_wrote_down(
    session: Session, units: UnitTree
) -> None:
    staff = make_staff(session, Role.STAFF, [units.community_a1])
    case = file(
        session,
        units,
        channel="walk_in",
        category="general",
        unit=units.community_a1,
        details={"caller_phone": "138 1234 5678"},
    )
    item = claim(session, case, staff)
    assert (item.channel, item.address) == ("sms", CALLER)


@pytest.mark.parametrize(
    ("channel", "why"),
    [("web", "web"), ("cli", "cli"), ("phone", "no_address")],
)
def test_nobody_to_tell_is_said_on_the_timeline_and_the_claim_stands(
    session: Session, units: UnitTree, channel: str, why: str
) -> None:
    staff = make_staff(session, Role.STAFF, [units.community_a1])
    case = file(session, units, channel=channel, category="general", unit=units.community_a1)
    actions.claim(session, case, Actor.person(staff), now=CLAIM_AT)
    assert outbox(session) == []
    assert case.assignee_id == staff.id
    (event,) = skipped(session, case)
    assert event.data == {"kind": "case_claimed", "why": why}
    assert event.note.startswith("未通知求助人")
    assert event.at == CLAIM_AT


def test_a_retiree_who_declined_messages_is_not_messaged(
    session: Session, units: UnitTree, volunteer: Staff
) -> None:
    person = retiree(session, units, consents={"contact_by_message": False})
    case = file(session, units, person=person, came_from=("sms", CALLER))
    actions.claim(session, case, Actor.person(volunteer), now=CLAIM_AT)
    assert outbox(session) == []
    assert [e.data["why"] for e in skipped(session, case)] == ["declined"]


def test_an_inactive_retiree_is_answered_only_where_the_request_came_from(
    session: Session, units: UnitTree, volunteer: Staff
) -> None:
    person = retiree(session, units, status=RetireeStatus.INACTIVE)
    from_family = file(session, units, person=person, came_from=("sms", CALLER))
    staff_filed = file(session, units, person=person, channel="walk_in")
    assert claim(session, from_family, volunteer).address == CALLER
    actions.claim(session, staff_filed, Actor.person(volunteer), now=CLAIM_AT)
    assert len(outbox(session)) == 1  # not their own phone
    assert [e.data["why"] for e in skipped(session, staff_filed)] == ["no_address"]


# -- once per claim ------------------------------------------------------------------------------


def test_claim_next_tells_the_retiree_on_both_databases(
    session: Session, units: UnitTree, volunteer: Staff
) -> None:
    # On PostgreSQL claim_next claims in one statement, outside _apply_claim.
    case = file(session, units, came_from=("telegram", "7001"))
    got = actions.claim_next(session, Actor.person(volunteer), now=CLAIM_AT)
    assert got is not None and got.id == case.id
    (item,) = outbox(session)
    assert (item.channel, item.address) == ("telegram", "7001")
    assert item.idempotency_key == f"{case.number}:case_claimed:1"
    assert "志愿者王芳" in item.payload["text"]


def test_a_reclaim_tells_again_and_a_retried_transaction_does_not_duplicate(
    engine: Engine, session: Session, units: UnitTree, volunteer: Staff
) -> None:
    case = file(session, units, came_from=("sms", CALLER))
    session.commit()
    number = case.number
    with Session(engine) as first_try:  # lost its connection before committing
        actions.claim(
            first_try, actions.get_case(first_try, number), Actor.person(volunteer), now=CLAIM_AT
        )
        first_try.rollback()
    for _ in range(2):  # the retry, then the same hook run again in its transaction
        with Session(engine) as retry, retry.begin():
            again = actions.get_case(retry, number)
            if again.assignee_id is None:
                actions.claim(retry, again, Actor.person(volunteer), now=CLAIM_AT)
            else:
                notices.tell_claimed(retry, again, retry.get(Staff, volunteer.id), now=CLAIM_AT)
    with Session(engine) as later, later.begin():
        again = actions.get_case(later, number)
        actor = Actor.person(later.get(Staff, volunteer.id))
        actions.release(later, again, actor, reason="cannot go today", now=CLAIM_AT)
        # claim_next: on PostgreSQL the one statement that counts the earlier claim itself
        assert actions.claim_next(later, actor, now=CLAIM_AT + timedelta(minutes=1)) is not None
    with Session(engine) as check:
        keys = [i.idempotency_key for i in outbox(check)]
    assert keys == [f"{number}:case_claimed:1", f"{number}:case_claimed:2"]


# -- the deadline as written ---------------------------------------------------------------------


def test_a_deadline_is_written_as_date_and_clock_in_local_time() -> None:
    from zoneinfo import ZoneInfo

    from config.i18n import get_catalogs

    cats = get_catalogs()
    moment = datetime(2026, 12, 31, 16, 5, tzinfo=UTC)  # 1 January 00:05 in Shanghai
    tz = ZoneInfo("Asia/Shanghai")
    assert notices.format_deadline(moment, tz, cats, "zh") == "1月1日星期五 0:05"
    assert notices.format_deadline(moment, tz, cats, "en") == "Friday 1 January, 0:05"
